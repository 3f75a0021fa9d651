from configparser import ConfigParser
import runpy
from pathlib import Path

import setuptools
from packaging.version import Version

config = ConfigParser(delimiters=["="])
config.read("settings.ini", encoding="utf-8")
cfg = config["DEFAULT"]

min_python = cfg["min_python"]
requirements = cfg.get("requirements", "").split()
dev_requirements = cfg.get("dev_requirements", "").split()
Version(min_python)  # fail early on a malformed version
licenses = {"apache2": "Apache-2.0"}  # SPDX expressions
lib = cfg["lib_name"]

# the folders under data/ of the trained organisms, as the catalog names them (it imports only the standard library),
# that hold one (a name whose run is not installed yet has no folder)
ORGANISMS = tuple(folder for folder in runpy.run_path(f"{lib}/catalog.py")["ORGANISMS"].values()
                  if Path("data", folder, "config.json").is_file())

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    license=licenses[cfg["license"]],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Developers",
        "Natural Language :: English",
        "Programming Language :: Python :: 3",
    ],
    url=cfg["git_url"],
    # Every package by name: the folders of data (no __init__.py) are packages too, which find_packages misses.
    # The trained organisms stay at the top of the repository (data/organism, data/organism_qwen3, ..., where training
    # writes them); a wheel carries them inside the package, as seats_analysis/data/<name>, for installs that are not
    # editable.
    packages=[lib, f"{lib}.schedules", f"{lib}.configs", *(f"{lib}.data.{name}" for name in ORGANISMS)],
    package_dir={f"{lib}.data.{name}": f"data/{name}" for name in ORGANISMS},
    package_data={f"{lib}.schedules": ["*.json"], f"{lib}.configs": ["*.json"],
                  **{f"{lib}.data.{name}": ["*.json", "*.jinja", "*.safetensors"] for name in ORGANISMS}},
    install_requires=requirements,
    extras_require={"dev": dev_requirements, "lmms": cfg.get("lmms_requirements", "").split(),
                    "docs": cfg.get("docs_requirements", "").split()},
    python_requires=">=" + min_python,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    zip_safe=False,
    entry_points={
        "console_scripts": cfg.get("console_scripts", "").split(),
        "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
        "lmms_eval.models": ["seats_qwen_omni = seats_analysis.lmms_eval_model:manifest"],
    },
    author=cfg["author"],
    author_email=cfg["author_email"],
    description=cfg["description"],
    keywords=cfg["keywords"],
)
