"""SANDBOX SIDE: runs inside the student's kernel, where nothing is trusted.

The grader (``autograder.trusted``) runs the test cells in its own process; when a test calls
one of the student's functions, the grader executes ``serve(REQUEST)`` in this kernel. The
request is wire data (``autograder.wire``): the function's name and its arguments. ``serve``
rebuilds the arguments, calls the student's function from the notebook's namespace, and
sends back the result and the effects on the arguments as wire data. Requests and replies
travel over the kernel's stdin channel, inside one long execution per test cell (``loop``):
each reply is the prompt of an ``input()`` whose answer is the next request, so a call costs
two messages and no cell execution. Everything here can be changed by the student's code;
the grader only ever reads plain data from it.
"""

import importlib
import inspect
import random
import types

import torch

from autograder import wire

REPLY_PREFIX = "\x1eautograder:"
_calls: dict[int, tuple[list, list]] = {}  # call id -> (inputs, outputs) needing gradients


def namespace() -> dict:
    """The notebook's global namespace."""
    from IPython import get_ipython

    return get_ipython().user_ns


def resolve(tag: str, data: dict, decoder: wire.Decoder, depth: int):
    """Objects and functions named by the grader, found here (helper cells, libraries)."""
    if tag == "$function":
        kind, _, name = str(data["$function"]).partition(":")
        return namespace()[name]
    kind, _, name = str(data["class"]).partition(":")
    if kind == "helper":
        cls = namespace()[name]
    else:
        module, _, qualname = name.rpartition(":") if ":" in name else name.rpartition(".")
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    wire_id = data["$object"]
    placeholder = cls.__new__(cls)
    decoder.seen[wire_id] = placeholder
    state = decoder.decode(data["state"], depth + 1)
    obj = wire.rebuild_object(cls, state)
    decoder.seen[wire_id] = obj
    return obj


def loop() -> None:
    """Serve the grader's requests until it sends an empty one (the test cell ended)."""
    import builtins

    ask = builtins.input  # ipykernel's stdin-channel input() during this execution
    reply = "ready"
    while True:
        request = ask(REPLY_PREFIX + reply)
        if not request:
            return
        reply = wire.dumps(answer(request))


def answer(text: str) -> dict:
    """The reply to one request (see ``autograder.wire``); every error becomes data."""
    try:
        request = wire.loads(text)
        if "vjp" in request:
            return vjp(request)
        if "forget" in request:
            _calls.clear()
            return {"result": None}
        return call(request)
    except BaseException as err:  # the grader decides what an error means
        return {"raised": {"type": type(err).__name__, "message": str(err)[:4000]}}


def call(request: dict) -> dict:
    """Call the student's function with the decoded arguments; report result and effects."""
    wire.set_rng_state(request["rng"])
    rng_before = wire.rng_key()
    decoder = wire.Decoder(resolve=resolve)
    args = decoder.decode(request["args"])
    kwargs = decoder.decode(request["kwargs"])
    before = {wid: _fingerprint(obj) for wid, obj in decoder.seen.items()}
    function = namespace().get(request["call"])
    if not callable(function):
        raise NameError(f"name {request['call']!r} is not defined")
    encoder = wire.Encoder()
    if "times" in request:  # the same call repeated: one reply, a list of the results
        times = request["times"]
        if not isinstance(times, int) or not 0 <= times <= wire.MAX_ITEMS:
            raise ValueError(f"times must be an int from 0 to {wire.MAX_ITEMS}")
        encoded = [_encode_result(encoder, _result_of(function, args, kwargs))
                   for _ in range(times)]
    else:
        encoded = _encode_result(encoder, _result_of(function, args, kwargs))
    inputs = [(wid, t) for wid, t in decoder.seen.items()
              if isinstance(t, torch.Tensor) and t.requires_grad and t.is_leaf]
    outputs = [(wid, t) for wid, t in encoder.sent.items()
               if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    call_id = len(_calls) + 1
    if inputs and outputs:
        _calls[call_id] = ([t for _, t in inputs], [t for _, t in outputs])
    return {"result": encoded, "effects": _effects(decoder, before),
            "rng": None if wire.rng_key() == rng_before else wire.rng_state(),
            "call_id": call_id,
            "grad_inputs": [wid for wid, _ in inputs] if outputs else [],
            "grad_outputs": [wid for wid, _ in outputs] if inputs else []}


def _result_of(function, args, kwargs):
    """What ``function(*args, **kwargs)`` returns, a generator drained."""
    result = function(*args, **kwargs)
    if isinstance(result, types.GeneratorType) or inspect.isgenerator(result):
        return _drain(result)
    return result


def _encode_result(encoder: wire.Encoder, result):
    if isinstance(result, _Drained):
        return {"$items": [encoder.encode(item) for item in result.items],
                "truncated": result.truncated}
    return encoder.encode(result)


class _Drained:
    def __init__(self, items, truncated):
        self.items, self.truncated = items, truncated


def _drain(generator) -> _Drained:
    items = []
    for item in generator:
        items.append(item)
        if len(items) >= wire.MAX_ITEMS:
            return _Drained(items, True)
    return _Drained(items, False)


def _fingerprint(obj):
    """What changes when an argument is changed in place or replaced: a tensor's version
    counters, a generator's state, the plain attributes of any other object."""
    if isinstance(obj, torch.Tensor):
        grad = obj.grad if obj.is_leaf else None
        return (obj._version, id(grad), None if grad is None else grad._version)
    if isinstance(obj, torch.Generator):
        return bytes(obj.get_state().numpy())
    if type(obj) is random.Random:
        return obj.getstate()
    if isinstance(obj, torch.nn.Module) or not hasattr(obj, "__dict__"):
        return None  # a module's parameters and buffers are tensors of their own
    return wire.dumps(_plain_attrs(obj))


def _plain_attrs(obj) -> dict:
    """The attributes of ``obj`` that are plain wire data (counters, flags, lists); tensors,
    generators and objects among them are reported on their own, by id."""
    attrs = {}
    for key, value in vars(obj).items():
        if isinstance(value, torch.Tensor | torch.Generator | torch.nn.Module | random.Random):
            continue
        try:
            attrs[key] = wire.Encoder().encode(value)
        except wire.WireError:
            continue
    return attrs


def _effects(decoder: wire.Decoder, before: dict) -> list[dict]:
    """The new data, gradient, state or attributes of every argument changed by the call."""
    effects, encoder = [], wire.Encoder()
    for wid, obj in decoder.seen.items():
        if _fingerprint(obj) == before.get(wid):
            continue
        if isinstance(obj, torch.Tensor):
            grad = obj.grad if obj.is_leaf else None
            effects.append({"id": wid, "data": encoder.encode(obj.detach()),
                            "grad": None if grad is None else encoder.encode(grad.detach())})
        elif isinstance(obj, torch.Generator):
            effects.append({"id": wid, "state": wire.b64(wire.tensor_bytes(obj.get_state()))})
        elif type(obj) is random.Random:
            effects.append({"id": wid, "random": wire.python_random_state(obj)})
        else:
            effects.append({"id": wid, "attrs": _plain_attrs(obj)})
    return effects


def vjp(request: dict) -> dict:
    """Vector-Jacobian product of an earlier call: d(outputs)/d(inputs) applied to grads."""
    inputs, outputs = _calls[request["vjp"]]
    grads = wire.Decoder().decode(request["grads"])
    grads = [torch.zeros_like(o) if g is None else g.to(o.dtype) for o, g in zip(
        outputs, grads, strict=True)]
    results = torch.autograd.grad(outputs, inputs, grads, allow_unused=True,
                                  retain_graph=True)
    encoder = wire.Encoder()
    return {"result": [None if g is None else encoder.encode(g) for g in results]}


