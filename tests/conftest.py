"""Shared fixtures (one tiny random-weight checkpoint of each kind per test session: SigLIP2
NaFlex, SAM3, CLIPSeg, CLIP, DINO), and a guard that keeps Ray out of the pytest process."""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

import pytest

from masc_suites import SUITE, make_images


class RayStaysOutOfThisProcess(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Refuses ``import ray`` in the pytest process, where it could crash a later test.

    pytester restores ``sys.modules`` when a test ends, dropping the modules the test imported.
    Ray's compiled core (``ray._raylet``) cannot be unloaded, so the next ``import ray`` in the
    same process runs Ray's Python modules again over the old core, and ``ray.init`` dies with
    a segmentation fault, taking the xdist worker with it. Which tests share a worker depends
    on timing, so it struck at random. Ray drivers run in a fresh interpreter instead
    (tests/ray_driver.py, or a ``runpytest_subprocess`` run); ``find_spec("ray")`` still finds
    an installed Ray.
    """

    REASON = ("Ray is not imported into the pytest process (tests/conftest.py says why): run the Ray "
              "driver in a fresh interpreter, as tests/ray_driver.py or pytester.runpytest_subprocess do")

    def find_spec(self, name, path=None, target=None):
        if name != "ray" or importlib.machinery.PathFinder.find_spec(name) is None:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise RuntimeError(self.REASON)


sys.meta_path.insert(0, RayStaysOutOfThisProcess())


@pytest.fixture(scope="session", autouse=True)
def data_libraries_imported_once():
    """Import pandas and pyarrow before any in-process ``pytester`` run: such a run drops the
    modules first imported inside it, and a pandas imported again next to a pyarrow that kept
    the first one's classes fails its conversions (``assert isinstance(values, cls._data_cls)``
    reading a Parquet file in a later test of the same worker)."""
    import importlib.util

    for name in ("pandas", "pyarrow", "pyarrow.pandas_compat"):
        if importlib.util.find_spec(name.split(".")[0]) is not None:
            __import__(name)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a 2-core machine running two
    xdist workers those threads only fight each other."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny checkpoint directory; its name says ``naflex`` so the reference treats it as NaFlex."""
    from pytest_masc.testing import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("models") / "tiny-siglip2-naflex", seed=0)


@pytest.fixture(scope="session")
def sam3_dir(tmp_path_factory) -> Path:
    """A tiny SAM3 checkpoint directory (seed 0), shared by the session: copy it before changing it."""
    from pytest_masc.testing import tiny_sam3_checkpoint

    return tiny_sam3_checkpoint(tmp_path_factory.mktemp("segmenters") / "tiny-sam3", seed=0)


@pytest.fixture(scope="session")
def clipseg_dir(tmp_path_factory) -> Path:
    """A tiny CLIPSeg checkpoint directory (seed 0), shared by the session: copy it before changing it."""
    from pytest_masc.testing import tiny_clipseg_checkpoint

    return tiny_clipseg_checkpoint(tmp_path_factory.mktemp("segmenters") / "tiny-clipseg", seed=0)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    """A tiny CLIP checkpoint directory (the CLIP-I / CLIP-T baselines), shared by the session."""
    from pytest_masc.testing import tiny_clip_checkpoint

    return tiny_clip_checkpoint(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture(scope="session")
def dino_dir(tmp_path_factory) -> Path:
    """A tiny DINO ViT checkpoint directory (the DINO-I baseline), shared by the session."""
    from pytest_masc.testing import tiny_dino_checkpoint

    return tiny_dino_checkpoint(tmp_path_factory.mktemp("models") / "tiny-dino")


@pytest.fixture(scope="session")
def tiny_masc(tiny_model_dir):
    """``MaSC`` on the tiny checkpoint, CPU, float32, 1024 patches."""
    from pytest_masc import MaSC

    return MaSC.from_pretrained(tiny_model_dir, device="cpu", local_files_only=True)


@pytest.fixture(scope="session")
def reference_masc(tiny_model_dir):
    """The authors' reference implementation (``masc-metric==0.3.0``) on the same checkpoint."""
    from oracle import require_oracle

    masc = require_oracle("masc")
    return masc.MaSC(model_id=str(tiny_model_dir), device="cpu")


@pytest.fixture
def suite_dir(pytester: pytest.Pytester) -> Path:
    """A pytester folder with the shared images, a ``pytest.ini`` and ``masc_dogs.toml`` (:data:`masc_suites.SUITE`)."""
    make_images(pytester.path)
    (pytester.path / "pytest.ini").write_text("[pytest]\n")  # rootdir here: node ids start at the suite file
    (pytester.path / "masc_dogs.toml").write_text(SUITE)
    return pytester.path
