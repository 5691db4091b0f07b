"""`tflite_int8_c`: the int8 model as the C source an embedded project compiles. The system C++ compiler builds
it, and the bytes it puts in the program are the model_int8.tflite the report measured; labels survive any name."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

CXX = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
needs_compiler = pytest.mark.skipif(CXX is None, reason="no C++ compiler on this machine (apt-get install g++)")

DUMP = r"""
#include <cstdio>
#include "model_data.h"
int main(int argc, char** argv) {
  if (argc > 1) {  // the labels, one per line
    for (int i = 0; i < EDGESHIP_NUM_CLASSES; ++i) std::printf("%s\n", g_model_labels[i]);
    return 0;
  }
  if (reinterpret_cast<unsigned long>(g_model_data) % 16 != 0) return 3;
  return std::fwrite(g_model_data, 1, g_model_data_len, stdout) == g_model_data_len ? 0 : 4;
}
"""


def _compile(folder: Path, tmp_path: Path) -> Path:
    (tmp_path / "dump.cc").write_text(DUMP)
    program = tmp_path / "dump"
    subprocess.run([CXX, "-std=c++11", "-Wall", "-Werror", "-I", str(folder), str(tmp_path / "dump.cc"),
                    str(folder / "model_data.cc"), "-o", str(program)], check=True, capture_output=True, text=True)
    return program


@needs_compiler
def test_the_c_array_compiles_and_holds_the_int8_model_byte_for_byte(exported_run, tmp_path):
    from edgeship.core.report import load_report
    from edgeship.runtime.spec import Bundle

    bundle = exported_run / "bundle"
    program = _compile(bundle / "model_int8_c", tmp_path)
    dumped = subprocess.run([str(program)], capture_output=True, check=True).stdout
    assert dumped == (bundle / "model_int8.tflite").read_bytes()
    labels = subprocess.run([str(program), "labels"], capture_output=True, check=True, text=True).stdout
    assert labels.splitlines() == list(Bundle.load(bundle).info.labels)
    header = (bundle / "model_int8_c" / "model_data.h").read_text()
    parity, _ = load_report(exported_run)
    c_row = next(a for a in parity.artifacts if a.name == "tflite_int8_c")
    int8_row = next(a for a in parity.artifacts if a.name == "tflite_int8")
    assert c_row.agreement == int8_row.agreement and c_row.accuracy == int8_row.accuracy  # run from the C source
    if _tflm():  # the arena the header states is the one TFLM allocates
        from edgeship.runtime.tflm_session import TFLMSession

        arena = TFLMSession(bundle / "model_int8.tflite").arena_bytes
        assert f"#define EDGESHIP_TENSOR_ARENA_BYTES {arena} " in header


def _tflm() -> bool:
    import importlib.util

    return importlib.util.find_spec("tflite_micro") is not None


@needs_compiler
def test_a_label_of_any_characters_survives_the_c_compiler(tmp_path):
    from edgeship.export.c_array_convert import c_string

    names = ['say "hi"', "back\\slash", "??=trigraph", "naïve café", "tab\there", "*/ end"]
    (tmp_path / "labels.cc").write_text("#include <cstdio>\nint main() {\n" + "".join(
        f'  std::printf("%s\\n", {c_string(n)});\n' for n in names) + "}\n")
    subprocess.run([CXX, "-Wall", "-Werror", "-Wno-trigraphs", str(tmp_path / "labels.cc"), "-o",
                    str(tmp_path / "labels")], check=True, capture_output=True)
    printed = subprocess.run([str(tmp_path / "labels")], capture_output=True, check=True).stdout.decode()
    assert printed.splitlines() == names


def test_an_edited_array_is_refused_with_the_file_and_the_fix(run_copy):
    from edgeship.runtime import Classifier
    from edgeship.runtime.c_array import read_c_array
    from edgeship.runtime.errors import EdgeshipError, ModelLoadError

    source = run_copy / "bundle" / "model_int8_c" / "model_data.cc"
    original = read_c_array(source.parent)
    assert original == (run_copy / "bundle" / "model_int8.tflite").read_bytes()
    text = source.read_text()
    source.write_text(text.replace("0x00,", "0x00, 0x00,", 1))  # one byte more than the length says
    with pytest.raises(ModelLoadError, match=r"model_data\.cc: `g_model_data` holds \d+ bytes but"):
        read_c_array(source.parent)
    with pytest.raises(EdgeshipError, match="model_int8_c"):  # the bundle's record refuses it first
        Classifier.load(run_copy / "bundle", artifact="tflite_int8_c")


def test_the_cli_exports_the_c_array_with_its_source_model(run_copy, small_digits, cli):
    from edgeship.runtime import Classifier

    (run_copy / "bundle" / "model_int8.tflite").unlink()
    done = cli("export", run_copy, "--formats", "tflite_int8_c")
    assert done.returncode == 0, done.stderr
    assert (run_copy / "bundle" / "model_int8.tflite").is_file()  # made first: the C array is its bytes
    c_array = Classifier.load(run_copy, artifact="tflite_int8_c")
    litert = Classifier.load(run_copy, artifact="tflite_int8")
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    assert np.array_equal(c_array.predict_proba(pixels), litert.predict_proba(pixels))
    image = next(small_digits.rglob("*.png"))
    done = cli("predict", run_copy / "bundle" / "model_int8_c", image, "--json")  # the folder alone, as typed
    assert done.returncode == 0, done.stderr
    assert done.stdout == cli("predict", run_copy / "bundle" / "model_int8.tflite", image, "--json").stdout
