"""Third-party code kept verbatim.

`tflite_metadata_schema_py_generated.py`: the FlatBuffers classes generated from TensorFlow Lite's
model-metadata schema (`metadata_schema.fbs`, version 1.5.0, file identifier "M001", Apache-2.0),
copied unchanged from the `mediapipe` 1.2.2 wheel (`mediapipe/tasks/metadata/`). Why a copy: the
classes that write this metadata ship only in `tflite-support` (does not install on current Python)
and `mediapipe` (whose writer module is broken in 1.2.2 and whose import costs 4 s and OpenCV).
A test checks the copy still matches the installed `mediapipe` wheel's file when one is installed.
"""
