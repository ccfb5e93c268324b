"""The wire format between the grader and the student's sandboxed kernel: plain data only.

Both sides import this module; neither trusts the other's objects. A message is JSON text;
every value in it is one of:

- None, bool, int, str: themselves; a float: itself, or ``{"$float": "inf" | "-inf" | "nan"}``;
- a list: a JSON array; a tuple: ``{"$tuple": [...]}``; a dict: ``{"$dict": [[key, value]]}``;
- a tensor: ``{"$tensor": id, "dtype", "shape", "device" ("cpu" or "meta"), "data" (base64
  of the raw bytes, absent on meta), "requires_grad", "leaf", "parameter", "grad"}``;
  a tensor (or generator, or object) sent before in the same message: ``{"$ref": id}``;
- a torch.device / torch.dtype: ``{"$device": "cpu"}`` / ``{"$dtype": "float32"}``;
- a torch.Generator: ``{"$generator": id, "state": base64}``; a random.Random:
  ``{"$random": id, "state": [version, [625 ints], gauss]}``;
- an object (an nn.Module, a d2lmini Vocab, an instance of a helper cell's class):
  ``{"$object": id, "class": "module:PKG.MOD:Qualname" | "helper:Name", "state": {...}}``,
  rebuilt from its attributes on the other side, never unpickled;
- a function of a helper cell or of the student: ``{"$function": "helper:f" | "student:f"}``;
- a generator a student's function returned, drained: ``{"$items": [...], "truncated"}``.

Requests (grader -> sandbox): ``{"call": name, "args": [...], "kwargs": {...}, "rng": ...}``
(``rng``: Python's and torch's global random state, or null when it is what the sandbox last
reported; a reply's ``rng`` is null when the call did not change it; an optional
``"times": n`` repeats the call n times in a row and the result is the list of n results),
``{"vjp": call_id, "grads": [...]}``, ``{"forget": true}``. Replies (sandbox -> grader):
``{"result": value, "effects": [...], "rng": ..., "call_id": n, "grad_outputs": [...]}`` or
``{"raised": {"type": name, "message": text}}``. The grader's decoder (``Decoder``) accepts a
closed set of types, dtypes and devices, checks every size against the bytes it got, and turns
objects into nothing it did not send: what the sandbox returns can be wrong, never clever.
"""

import base64
import json
import math
import random

import torch

MAX_MESSAGE_BYTES = 64 * 1024 ** 2   # one message, either way
MAX_ITEMS = 10_000                   # items drained from a generator a student returns
MAX_DEPTH = 40                       # nesting of lists, tuples and dicts
DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64,
    torch.complex128, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
    torch.bool)}
DEVICES = ("cpu", "meta")


class WireError(ValueError):
    """A message that is not valid wire data (too big, malformed, an unknown type)."""


def dumps(message) -> str:
    """JSON text of an already encoded message (``Encoder.encode`` output)."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False)


def loads(text: str):
    """Parse JSON text within the size limit; any parsing problem is a WireError."""
    if not isinstance(text, str) or len(text) > MAX_MESSAGE_BYTES:
        raise WireError(f"a message must be text of at most {MAX_MESSAGE_BYTES} bytes")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise WireError(f"not a wire message ({type(err).__name__})") from None


def tensor_bytes(t: torch.Tensor) -> bytes:
    """The raw bytes of a CPU tensor, contiguous, in its own dtype."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def tensor_from(dtype_name: str, shape, data: bytes | None, device: str) -> torch.Tensor:
    """A fresh tensor from a dtype name, a shape and raw bytes (checked against each other)."""
    if dtype_name not in DTYPES:
        raise WireError(f"unknown dtype {dtype_name!r}")
    if device not in DEVICES:
        raise WireError(f"unknown device {device!r}")
    if (not isinstance(shape, list) or len(shape) > 16
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2 ** 40
                       for n in shape)):
        raise WireError(f"bad shape {shape!r}")
    dtype = DTYPES[dtype_name]
    if device == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    count = math.prod(shape)
    size = torch.empty((), dtype=dtype).element_size()
    if data is None or len(data) != count * size:
        raise WireError(f"a {dtype_name} tensor of shape {tuple(shape)} needs "
                        f"{count * size} bytes")
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    if dtype == torch.bfloat16:
        return raw.view(torch.int16).view(torch.bfloat16).reshape(shape).clone()
    return raw.view(dtype).reshape(shape).clone()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text) -> bytes:
    if not isinstance(text, str):
        raise WireError("expected base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise WireError("bad base64 data") from None


def encode_float(x: float):
    if math.isfinite(x):
        return x
    return {"$float": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}


class Encoder:
    """Turns values into wire data; remembers every tensor, generator and object it sent
    (by wire id) so that effects can be matched to them and shared tensors stay shared.

    ``function_name(obj)`` gives the wire name ("helper:f", "student:f") of a function this
    side may send by name, ``class_name(cls)`` that of a class whose instances may be sent
    by their attributes ("helper:C", "module:torch.nn.modules.rnn.RNN"); None: not sendable.
    """

    def __init__(self, function_name=lambda obj: None, class_name=lambda cls: None):
        self.function_name, self.class_name = function_name, class_name
        self.sent: dict[int, object] = {}   # wire id -> the object itself
        self._ids: dict[int, int] = {}      # id(obj) -> wire id

    def _remember(self, obj) -> tuple[int, bool]:
        key = id(obj)
        if key in self._ids:
            return self._ids[key], False
        wire_id = len(self.sent) + 1
        self._ids[key] = wire_id
        self.sent[wire_id] = obj
        return wire_id, True

    def encode(self, value, depth: int = 0):
        if depth > MAX_DEPTH:
            raise WireError("value nested too deeply to send")
        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            return encode_float(value)
        if isinstance(value, list):
            return [self.encode(v, depth + 1) for v in value]
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(v, depth + 1) for v in value]}
        if isinstance(value, dict):
            return {"$dict": [[self.encode(k, depth + 1), self.encode(v, depth + 1)]
                              for k, v in value.items()]}
        if isinstance(value, torch.Tensor):
            return self.tensor(value, depth)
        if isinstance(value, torch.device):
            return {"$device": value.type}
        if isinstance(value, torch.dtype):
            return {"$dtype": str(value).removeprefix("torch.")}
        if isinstance(value, torch.Generator):
            wire_id, new = self._remember(value)
            if not new:
                return {"$ref": wire_id}
            return {"$generator": wire_id, "state": b64(tensor_bytes(value.get_state()))}
        if type(value) is random.Random:
            wire_id, new = self._remember(value)
            if not new:
                return {"$ref": wire_id}
            return {"$random": wire_id, "state": python_random_state(value)}
        name = self.function_name(value)
        if name is not None:
            return {"$function": name}
        cls_name = self.class_name(type(value))
        if cls_name is not None:
            return self.object(value, cls_name, depth)
        raise WireError(f"a {type(value).__name__} cannot cross the sandbox boundary")

    def tensor(self, t: torch.Tensor, depth: int):
        wire_id, new = self._remember(t)
        if not new:
            return {"$ref": wire_id}
        device = "meta" if t.device.type == "meta" else "cpu"
        data = None if device == "meta" else b64(tensor_bytes(t.detach().cpu()))
        grad = t.grad if t.is_leaf else None
        return {"$tensor": wire_id, "dtype": str(t.dtype).removeprefix("torch."),
                "shape": list(t.shape), "device": device, "data": data,
                "requires_grad": bool(t.requires_grad), "leaf": bool(t.is_leaf),
                "parameter": isinstance(t, torch.nn.Parameter),
                "grad": None if grad is None else self.tensor(grad, depth + 1)}

    def object(self, obj, cls_name: str, depth: int):
        wire_id, new = self._remember(obj)
        if not new:
            return {"$ref": wire_id}
        return {"$object": wire_id, "class": cls_name,
                "state": self.encode(object_state(obj), depth + 1)}


# nn.Module bookkeeping that is rebuilt by nn.Module.__init__, never sent
MODULE_INTERNALS = {"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set",
                    "_backward_pre_hooks", "_backward_hooks", "_is_full_backward_hook",
                    "_forward_hooks", "_forward_hooks_with_kwargs",
                    "_forward_hooks_always_called", "_forward_pre_hooks",
                    "_forward_pre_hooks_with_kwargs", "_state_dict_hooks",
                    "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
                    "_load_state_dict_post_hooks", "_flat_weights", "_flat_weight_refs",
                    "training"}


def object_state(obj) -> dict:
    """What describes an object on the wire: its attributes; for an nn.Module its
    parameters, buffers, submodules and training flag separately."""
    attrs = {k: v for k, v in vars(obj).items() if k not in MODULE_INTERNALS}
    if not isinstance(obj, torch.nn.Module):
        return {"attrs": attrs}
    return {"attrs": attrs, "training": obj.training,
            "parameters": dict(obj._parameters), "buffers": dict(obj._buffers),
            "modules": dict(obj._modules)}


def rebuild_object(cls, state: dict):
    """An instance of ``cls`` from ``object_state`` (already decoded), without its __init__."""
    obj = cls.__new__(cls)
    if isinstance(obj, torch.nn.Module):
        torch.nn.Module.__init__(obj)
        obj.training = bool(state.get("training", True))
        for name, p in state.get("parameters", {}).items():
            if p is not None and not isinstance(p, torch.nn.Parameter):
                p = _as_parameter(p)
            obj._parameters[name] = p
        obj._buffers.update(state.get("buffers", {}))
        obj._modules.update(state.get("modules", {}))
    for key, value in state.get("attrs", {}).items():
        object.__setattr__(obj, key, value)
    if hasattr(obj, "_init_flat_weights"):  # nn.RNN / LSTM / GRU keep a list of weights
        obj._init_flat_weights()
    return obj


def _as_parameter(t: torch.Tensor) -> torch.nn.Parameter:
    p = torch.nn.Parameter(t.detach(), requires_grad=t.requires_grad)
    p.grad = t.grad
    return p


class Decoder:
    """Turns wire data back into values. ``resolve(kind, payload)`` makes what this side
    allows for ``$object`` / ``$function`` (the grader's decoder refuses both); tensors and
    generators the other side already knows (``known``, by wire id) are matched by id."""

    def __init__(self, resolve=None, known: dict[int, object] | None = None,
                 rebuild_leaves: bool = True):
        self.resolve = resolve
        self.known = dict(known or {})
        self.rebuild_leaves = rebuild_leaves
        self.seen: dict[int, object] = {}
        self.items = 0

    def decode(self, data, depth: int = 0):
        if depth > MAX_DEPTH:
            raise WireError("value nested too deeply")
        if data is None or isinstance(data, bool | int | str | float):
            return data
        if isinstance(data, list):
            return [self.decode(v, depth + 1) for v in data]
        if not isinstance(data, dict) or len(data) == 0:
            raise WireError("not a wire value")
        tag = next(iter(data))
        if tag == "$float":
            if data["$float"] not in ("inf", "-inf", "nan"):
                raise WireError("bad float")
            return float(data["$float"])
        if tag == "$tuple":
            return tuple(self.decode(v, depth + 1) for v in _list(data["$tuple"]))
        if tag == "$dict":
            pairs = [_pair(p) for p in _list(data["$dict"])]
            return {_key(self.decode(k, depth + 1)): self.decode(v, depth + 1)
                    for k, v in pairs}
        if tag == "$ref":
            if data["$ref"] in self.seen:
                return self.seen[data["$ref"]]
            raise WireError("reference to nothing sent")
        if tag == "$tensor":
            return self.tensor(data, depth)
        if tag == "$device":
            if data["$device"] not in DEVICES + ("cuda",):
                raise WireError("unknown device")
            return torch.device(data["$device"])
        if tag == "$dtype":
            if data["$dtype"] not in DTYPES:
                raise WireError("unknown dtype")
            return DTYPES[data["$dtype"]]
        if tag == "$generator":
            gen = torch.Generator()
            gen.set_state(tensor_from("uint8", [len(unb64(data["state"]))],
                                      unb64(data["state"]), "cpu"))
            self.seen[data["$generator"]] = gen
            return gen
        if tag == "$random":
            rng = random.Random()
            set_python_random_state(rng, data["state"])
            self.seen[data["$random"]] = rng
            return rng
        if tag == "$items":
            items = _list(data["$items"])
            if len(items) > MAX_ITEMS:
                raise WireError("too many items")
            return (v for v in [self.decode(v, depth + 1) for v in items])
        if tag in ("$object", "$function") and self.resolve is not None:
            return self.resolve(tag, data, self, depth)
        raise WireError(f"{tag!r} is not accepted here")

    def tensor(self, data: dict, depth: int) -> torch.Tensor:
        t = tensor_from(data.get("dtype"), data.get("shape"),
                        None if data.get("device") == "meta" else unb64(data.get("data")),
                        data.get("device"))
        if data.get("requires_grad") is True and (t.is_floating_point() or t.is_complex()):
            t.requires_grad_(True)
        if data.get("parameter") is True:
            t = torch.nn.Parameter(t, requires_grad=t.requires_grad)
        self.seen[data["$tensor"]] = t
        if data.get("grad") is not None and t.requires_grad:
            grad = self.decode(data["grad"], depth + 1)
            if isinstance(grad, torch.Tensor) and grad.shape == t.shape:
                t.grad = grad.detach()
        return t


def _list(value) -> list:
    if not isinstance(value, list):
        raise WireError("expected a list")
    return value


def _pair(value) -> tuple:
    if not isinstance(value, list) or len(value) != 2:
        raise WireError("expected a [key, value] pair")
    return value[0], value[1]


def _key(value):
    try:
        hash(value)
    except TypeError:
        raise WireError("a dict key must be hashable") from None
    return value


def python_random_state(rng) -> list:
    """A random.Random's (or the random module's) state as plain data."""
    version, internal, gauss = rng.getstate()
    return [version, list(internal), None if gauss is None else encode_float(gauss)]


def set_python_random_state(rng, state) -> None:
    """Set a random.Random's state from ``python_random_state`` data (checked)."""
    try:
        version, internal, gauss = state
        if isinstance(gauss, dict):
            gauss = float(gauss["$float"])
        if not (isinstance(internal, list) and len(internal) == 625
                and all(isinstance(x, int) and 0 <= x < 2 ** 32 for x in internal)
                and (gauss is None or isinstance(gauss, float))):
            raise WireError("bad Python random state")
        rng.setstate((version, tuple(internal), gauss))
    except (KeyError, TypeError, ValueError) as err:
        raise WireError(f"bad Python random state ({type(err).__name__})") from None


def rng_state() -> dict:
    """Python's and torch's global random state, as plain data."""
    return {"python": python_random_state(random),
            "torch": b64(tensor_bytes(torch.get_rng_state()))}


def rng_key() -> tuple:
    """A cheap fingerprint of the global random state, to tell whether it changed."""
    return random.getstate(), bytes(torch.get_rng_state().numpy())


def set_rng_state(state) -> None:
    """Set Python's and torch's global random state from ``rng_state()`` data (checked);
    None leaves it as it is (the other side says it has not changed)."""
    if state is None:
        return
    if not isinstance(state, dict) or "python" not in state or "torch" not in state:
        raise WireError("bad random state")
    set_python_random_state(random, state["python"])
    try:
        raw = unb64(state["torch"])
        torch.set_rng_state(tensor_from("uint8", [len(raw)], raw, "cpu"))
    except (TypeError, ValueError, RuntimeError) as err:
        raise WireError(f"bad random state ({type(err).__name__})") from None
