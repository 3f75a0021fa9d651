"""How the multi-process tests start their processes: `accelerate launch` with two CPU processes on a free port.

A port found free can be taken by another process (another test launching at the same time) before the launch binds
it; such a launch is started again on another port. A launch that runs past its time limit is stopped with every
process it started, and its output so far is shown.
"""
import os
import signal
import socket
import subprocess
import sys

ENV = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
TWO_PROCESSES = ("--multi_gpu", "--num_processes", "2")  # --multi_gpu gives the ranks; the program keeps them on the CPU
PORT_TAKEN = ("another process is utilizing it", "EADDRINUSE")  # accelerate's check, then the store's bind


def free_port() -> int:
    "A TCP port that is free now."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch(*options: str, port: int | None = None) -> list[str]:
    "`accelerate launch OPTIONS` on one machine, without mixed precision or dynamo, as a command line (program follows)."
    return [sys.executable, "-m", "accelerate.commands.launch", *options, "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port or free_port())]


def run(command: list[str], timeout: float = 480) -> subprocess.CompletedProcess:
    "Run `command` in its own process group; past `timeout` seconds the whole group is killed and the output shown."
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the launcher and every rank it started
        stdout, stderr = process.communicate()
        raise AssertionError(f"{' '.join(command)} ran past {timeout} s:\n{stdout[-3000:]}{stderr[-3000:]}") from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def launch(options: tuple[str, ...], program: list[str], timeout: float = 480,
           attempts: int = 3) -> subprocess.CompletedProcess:
    """`accelerate launch OPTIONS PROGRAM` (`program`: a script and its arguments, or `-m module ...`) on a free port,
    started again on another port (up to `attempts` times) when the port was taken before the launch could bind it."""
    for _ in range(attempts):
        done = run(accelerate_launch(*options) + list(program), timeout)
        if done.returncode == 0 or not any(text in done.stdout + done.stderr for text in PORT_TAKEN):
            break
    return done
