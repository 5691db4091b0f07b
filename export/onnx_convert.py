"""Keras -> ONNX through tf2onnx, with a dynamic batch dimension and an input named `image`."""

from __future__ import annotations

from edgeship.train.tfenv import import_keras

OPSET = 17


def float32(job) -> bytes:
    tf, _ = import_keras()
    import tf2onnx

    height, width = job.info.input.height, job.info.input.width
    signature = (tf.TensorSpec((None, height, width, 3), tf.float32, name="image"),)
    model_proto, _ = tf2onnx.convert.from_keras(job.model, input_signature=signature, opset=OPSET)
    return model_proto.SerializeToString()
