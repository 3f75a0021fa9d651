from configparser import ConfigParser
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
    packages=setuptools.find_packages(include=[cfg["lib_name"], cfg["lib_name"] + ".*"]),
    include_package_data=True,
    package_data={cfg["lib_name"]: ["schedules/*.json"]},
    install_requires=requirements,
    extras_require={"dev": dev_requirements, "lmms": cfg.get("lmms_requirements", "").split()},
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
