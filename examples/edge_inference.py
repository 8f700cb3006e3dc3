"""Classify image files as a device would: only `ai-edge-litert` and numpy, no TensorFlow.

    python examples/edge_inference.py EXPORT_DIR image.png [more.png ...]

EXPORT_DIR is the output of `keras-sisa export` (it holds model.tflite and
labels.txt). PNG files are decoded here with zlib and numpy (8-bit, not interlaced);
`.npy` files holding one image are read as they are.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib

import numpy as np
from ai_edge_litert.interpreter import Interpreter

CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def read_png(path: str) -> np.ndarray:
    """An 8-bit, non-interlaced PNG as a (height, width, channels) uint8 array."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file.")
    position, idat, header = 8, b"", None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or interlace or colour not in CHANNELS:
        raise ValueError(f"{path}: only 8-bit, non-interlaced grey/RGB(A) PNGs are supported.")
    pixel = CHANNELS[colour]
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * pixel)
    rows = np.zeros((height + 1, width * pixel), np.int32)  # row 0: the zero row above the image
    for y in range(height):
        rows[y + 1] = _unfilter(raw[y, 0], raw[y, 1:].astype(np.int32), rows[y], pixel)
    return rows[1:].astype(np.uint8).reshape(height, width, pixel)


def _unfilter(kind: int, line: np.ndarray, above: np.ndarray, pixel: int) -> np.ndarray:
    if kind == 0:
        return line
    if kind == 2:
        return (line + above) % 256
    out = line.copy()
    for i in range(len(out)):
        left = out[i - pixel] if i >= pixel else 0
        corner = above[i - pixel] if i >= pixel else 0
        if kind == 1:
            out[i] = (out[i] + left) % 256
        elif kind == 3:
            out[i] = (out[i] + (left + above[i]) // 2) % 256
        else:
            p = left + above[i] - corner
            pa, pb, pc = abs(p - left), abs(p - above[i]), abs(p - corner)
            predictor = left if pa <= pb and pa <= pc else above[i] if pb <= pc else corner
            out[i] = (out[i] + predictor) % 256
    return out


def fit_to_input(image: np.ndarray, shape) -> np.ndarray:
    """Matches channels (drop alpha, grey <-> RGB) and size (nearest neighbour) to the model."""
    height, width, channels = shape
    image = image if image.ndim == 3 else image[..., None]
    if image.shape[-1] in (2, 4):
        image = image[..., :-1]
    if image.shape[-1] != channels:
        image = image.mean(axis=-1, keepdims=True) if channels == 1 else np.repeat(image, 3, axis=-1)
    rows = np.arange(height) * image.shape[0] // height
    cols = np.arange(width) * image.shape[1] // width
    return image[rows][:, cols]


def main(export_dir: str, paths: list[str]) -> None:
    interpreter = Interpreter(model_path=os.path.join(export_dir, "model.tflite"))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    with open(os.path.join(export_dir, "labels.txt")) as f:
        labels = [line.rstrip("\n") for line in f]
    for path in paths:
        image = np.load(path) if path.endswith(".npy") else read_png(path)
        batch = fit_to_input(image, source["shape"][1:])[None].astype(source["dtype"])
        interpreter.set_tensor(source["index"], batch)
        interpreter.invoke()
        probabilities = interpreter.get_tensor(target["index"])[0]
        best = int(np.argmax(probabilities))
        print(f"{path}: {labels[best]} ({100 * float(probabilities[best]):.1f}%)")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
