"""User-value (customer lifetime value) model: CDNOW protocol, training, ONNX export."""

from training.value.build import ValueModelResult, build_value_model
from training.value.protocol import CDNOW_PROTOCOL, ValueProtocol

__all__ = ["CDNOW_PROTOCOL", "ValueModelResult", "ValueProtocol", "build_value_model"]
