"""Install napari-sam2's runtime, test and [cluster] requirements from pyproject.toml, except torch and the reference.

torch is installed first with an exact pin (scripts/setup.sh); the reference ``sam2`` is installed with
``--no-deps`` because its metadata requires torchvision, which would replace the CPU torch.
"""

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

SKIP = {"torch", "sam2"}


def main() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + extras["test"] + extras["cluster"]  # cluster: the `batch` tests run in CI
    reqs = [r for r in wanted if Requirement(r).name not in SKIP]
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *reqs])


if __name__ == "__main__":
    main()
