"""Package discovery for the folder-to-package mapping pyproject.toml cannot express alone.

``trainer/`` and ``device/`` install as ``edgesight.trainer`` and ``edgesight.device``; every
sub-package under them is found here, so adding one needs no edit to a hand-kept list.
"""

from setuptools import find_packages, setup

ROOTS = {"edgesight": "edgesight_pkg", "edgesight.device": "device", "edgesight.trainer": "trainer"}
packages = [*ROOTS]
for name, folder in ROOTS.items():
    if name != "edgesight":
        packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=ROOTS)
