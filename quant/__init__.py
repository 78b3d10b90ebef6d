"""Quantization of laneloop models: PTQ and QAT int8 (torchao PT2E), ONNX export, comparison.

Dynamic quantization is deliberately not offered: it quantizes only Linear/LSTM weights
and computes activations in float, so it does nothing for convolutional segmenters.
"""
