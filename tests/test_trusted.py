"""The trust boundary without nbgrader: the wire format, the proxies against a real kernel,
and the test-cell contract of every lesson."""

import base64
import json
import socket
import threading
import time
from pathlib import Path

import nbformat
import pytest
import torch
import zmq
from jupyter_client import AsyncKernelManager, KernelManager
from jupyter_core.utils import run_sync
from nbformat.v4 import new_code_cell, new_notebook

from autograder import wire
from autograder.config import SOLUTIONS, lessons
from autograder.trusted import (
    AnswerError,
    Boundary,
    CallTimeout,
    KernelGone,
    StdinReadyClient,
    TrustedTests,
    contract_problems,
    delegations,
)

ROOT = Path(__file__).resolve().parents[1]


def roundtrip(value):
    """Encode on one side, decode on the other (the grader's decoder: no objects)."""
    text = wire.dumps(wire.Encoder().encode(value))
    return wire.Decoder().decode(wire.loads(text))


def test_plain_values_keep_their_exact_types():
    value = [1, 2.5, float("inf"), None, True, "s", (1, (2,)), {"a": [3], 4: (5,)}]
    back = roundtrip(value)
    assert back[:2] == [1, 2.5] and back[2] == float("inf")
    assert type(back[6]) is tuple and type(back[6][1]) is tuple and back[7] == {"a": [3], 4: (5,)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64, torch.bool,
                                   torch.bfloat16, torch.uint8])
def test_tensors_cross_with_dtype_shape_and_gradient(dtype):
    t = (torch.arange(6).reshape(2, 3) % 2).to(dtype)
    back = roundtrip(t)
    assert back.dtype == dtype and back.shape == (2, 3) and torch.equal(back, t)
    p = torch.randn(3, requires_grad=True)
    p.grad = torch.ones(3)
    back = roundtrip([p, p])
    assert back[0] is back[1], "a tensor sent twice is one tensor on the other side"
    assert back[0].requires_grad and torch.equal(back[0].grad, torch.ones(3))


def test_meta_tensors_cross_as_shape_and_dtype():
    back = roundtrip(torch.empty(4, 5, device="meta", dtype=torch.float16))
    assert back.device.type == "meta" and back.shape == (4, 5) and back.dtype == torch.float16


@pytest.mark.parametrize("message", [
    '{"$tensor": 1, "dtype": "float32", "shape": [1000], "device": "cpu", "data": "AAAA"}',
    '{"$tensor": 1, "dtype": "object", "shape": [1], "device": "cpu", "data": "AAAA"}',
    '{"$tensor": 1, "dtype": "float32", "shape": [1], "device": "cuda:0", "data": "AAAA"}',
    '{"$object": 1, "class": "module:os:system", "state": {}}',
    '{"$function": "helper:print"}',
    '{"$ref": 7}',
    '{"$dict": [[[1], 2]]}',
    '{"__class__": "x"}',
    "[" * 5000 + "]" * 5000,
])
def test_the_grader_refuses_anything_but_data(message):
    """What the sandbox sends can be wrong, never clever: no objects, no bad sizes."""
    with pytest.raises(wire.WireError):
        wire.Decoder().decode(wire.loads(message))


def test_messages_have_a_size_limit():
    with pytest.raises(wire.WireError):
        wire.loads('"' + "x" * (wire.MAX_MESSAGE_BYTES + 1) + '"')


def test_random_state_is_checked():
    state = wire.rng_state()
    state["python"][1] = state["python"][1][:10]
    with pytest.raises(wire.WireError):
        wire.set_rng_state(state)


def test_delegation_is_found_in_the_answer_not_in_its_own_name():
    answer = ("def seq_data_iter_sequential(corpus, b, n):\n"
              "    yield from d2l.seq_data_iter_sequential(corpus, b, n)\n")
    assert delegations(answer, "seq_data_iter_sequential", ["seq_data_iter_sequential"]) == \
        ["seq_data_iter_sequential"]
    own = "def seq_data_iter_sequential(corpus, b, n):\n    return iter([])\n"
    assert delegations(own, "seq_data_iter_sequential", ["seq_data_iter_sequential"]) == []
    sneaky = "def f(x):\n    return getattr(d2l, 'seq_data_iter_' + 'sequential')(x)\n"
    assert delegations(sneaky, "f", ["seq_data_iter_sequential"]) == [], \
        "string tricks are not caught statically (the library keeps answers private too)"


@pytest.mark.parametrize("name", lessons(ROOT / SOLUTIONS))
def test_every_lesson_keeps_the_test_cell_contract(name):
    """A graded cell uses only helper cells, the student's functions and its own names."""
    nb = nbformat.read(ROOT / SOLUTIONS / f"{name}.ipynb", as_version=4)
    assert contract_problems(nb) == []


def test_the_contract_check_can_fail():
    nb = new_notebook(cells=[
        new_code_cell("vocab = 3"),
        new_code_cell("assert vocab == 3", metadata={"nbgrader": {
            "grade": True, "grade_id": "t", "locked": True, "points": 1, "solution": False}})])
    assert contract_problems(nb) == ["test cell 't' uses 'vocab', which no helper cell defines"]


STUDENT = '''
import torch, random
def scale(x, by=2.0):
    return x * by
def clip(params, theta):
    for p in params:
        p.grad.mul_(0.5)
def draws(n, generator):
    return [int(torch.randint(0, 100, (1,), generator=generator)) for _ in range(n)]
def seeded():
    return random.random(), float(torch.rand(()))
def batches(n):
    for i in range(n):
        yield torch.tensor([i]), torch.tensor([i + 1])
def forever():
    while True:
        pass
class Sneaky(float):
    def __eq__(self, other):
        return True
def evil():
    return Sneaky(1.0)
def evil_object():
    return Sneaky
def make_params(device):
    return [torch.zeros(2, 3, device=device, requires_grad=True)]
def die():
    __import__("os")._exit(1)
'''


def test_the_stdin_channel_is_connected_before_the_first_request():
    """A kernel drops an input_request to a client still connecting (its stdin is a ROUTER):
    the grader's client returns only once a message can reach it. Here the kernel's stdin
    comes up half a second late; a plain client would return at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.router_mandatory = True  # an unknown peer raises instead of dropping silently
    late = threading.Timer(0.5, router.bind, args=[f"tcp://127.0.0.1:{port}"])
    late.start()
    kc = StdinReadyClient(ip="127.0.0.1", stdin_port=port)
    kc.start_channels(shell=False, iopub=False, stdin=True, hb=False, control=False)
    late.join()
    try:
        until = time.monotonic() + 0.01  # the kernel's side of the handshake may trail ours
        while True:
            try:
                router.send_multipart([kc.session.bsession, b"ping"])
                break
            except zmq.ZMQError as err:
                assert time.monotonic() < until, f"the kernel cannot reach the client: {err}"
        assert kc.stdin_channel.socket.poll(2000) and \
            kc.stdin_channel.socket.recv_multipart() == [b"ping"]
    finally:
        kc.stop_channels()
        router.close(linger=0)


@pytest.fixture(scope="module")
def kernel():
    km = KernelManager(kernel_name="python3")
    km.start_kernel(extra_arguments=["--HistoryManager.hist_file=:memory:"])
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    kc.execute_interactive(STUDENT, timeout=120)
    kc.stop_channels()
    yield km
    km.shutdown_kernel(now=True)


@pytest.fixture()
def tests(kernel):
    source = new_notebook(cells=[new_code_cell(STUDENT, metadata={"nbgrader": {
        "grade": False, "grade_id": "answer", "locked": False, "solution": True}})])
    trusted = TrustedTests(source, {}, lambda: Boundary(kernel))
    trusted.deadline = time.monotonic() + 60
    yield trusted
    if trusted.boundary is not None:
        trusted.boundary.close()


def test_results_come_back_as_data_and_gradients_flow(tests):
    scale = tests.ns["scale"]
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = scale(x, by=3.0)
    assert torch.equal(y.detach(), torch.tensor([3.0, 6.0])) and y.requires_grad
    y.sum().backward()  # the backward pass asks the sandbox for the vector-Jacobian product
    assert torch.equal(x.grad, torch.tensor([3.0, 3.0]))


def test_in_place_gradient_changes_come_back(tests):
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.tensor([4.0, 8.0])
    assert tests.ns["clip"]([p], 1.0) is None
    assert torch.equal(p.grad, torch.tensor([2.0, 4.0]))


def test_generator_state_is_copied_in_and_back(tests):
    gen = torch.Generator().manual_seed(5)
    first = tests.ns["draws"](3, gen)
    reference = torch.Generator().manual_seed(5)
    expected = [int(torch.randint(0, 100, (1,), generator=reference)) for _ in range(6)]
    assert first + tests.ns["draws"](3, gen) == expected


def test_repeated_calls_are_one_request_and_equal_the_calls_one_by_one(tests):
    import d2lmini as d2l

    gen = torch.Generator().manual_seed(5)
    calls_before = tests.boundary.stats["calls"] if tests.boundary else 0
    batched = d2l.repeat_calls(tests.ns["draws"], 4, 2, gen)
    assert tests.boundary.stats["calls"] == calls_before + 1
    one_by_one = torch.Generator().manual_seed(5)
    assert batched == [tests.ns["draws"](2, one_by_one) for _ in range(4)]
    assert torch.equal(gen.get_state(), one_by_one.get_state()), "the generator moved on alike"
    epochs = d2l.repeat_calls(tests.ns["batches"], 2, 2)
    assert [[(int(x), int(y)) for x, y in epoch] for epoch in epochs] == [[(0, 1), (1, 2)]] * 2
    with pytest.raises(ValueError, match="at most"):
        d2l.repeat_calls(tests.ns["draws"], 10**6, 1, gen)


def test_global_random_state_is_shared(tests):
    import random

    random.seed(1)
    torch.manual_seed(1)
    remote = tests.ns["seeded"]()
    random.seed(1)
    torch.manual_seed(1)
    assert remote == (random.random(), float(torch.rand(())))
    after_remote = tests.ns["seeded"]()  # the sandbox's states moved on with the grader's
    random.seed(1)
    torch.manual_seed(1)
    random.random(), torch.rand(())
    assert after_remote == (random.random(), float(torch.rand(())))


def test_generators_are_drained_into_iterators(tests):
    got = list(tests.ns["batches"](3))
    assert [(int(x), int(y)) for x, y in got] == [(0, 1), (1, 2), (2, 3)]


def test_meta_device_round_trip(tests):
    (p,) = tests.ns["make_params"](torch.device("meta"))
    assert p.device.type == "meta" and p.shape == (2, 3) and p.requires_grad


def test_only_data_comes_back(tests):
    """A float that equals everything arrives as a plain float; a class cannot cross."""
    value = tests.ns["evil"]()
    assert type(value) is float and value != 2.0
    with pytest.raises(AnswerError, match="cannot cross"):
        tests.ns["evil_object"]()


def test_a_call_past_the_deadline_is_interrupted(tests, kernel):
    tests.deadline = time.monotonic() + 2
    if tests.boundary is not None:
        tests.boundary.deadline = tests.deadline
    with pytest.raises(CallTimeout):
        tests.ns["forever"]()
    assert kernel.is_alive()


def test_payload_is_base64_json():
    """The request is sent as a base64 literal: no test source, only data."""
    request = {"call": "f", "args": [1], "kwargs": {"$dict": []}, "rng": None}
    text = base64.b64decode(wire.b64(wire.dumps(request).encode())).decode()
    assert json.loads(text) == request


def test_nbgraders_async_kernel_manager_is_interrupted_and_its_death_seen():
    """nbgrader hands the boundary an AsyncKernelManager: a call past the deadline is really
    interrupted (the next call is answered) and a kernel that dies mid-call is seen as dead
    (not as a call that timed out and ignored its interrupt)."""
    km = AsyncKernelManager(kernel_name="python3")
    run_sync(km.start_kernel)(extra_arguments=["--HistoryManager.hist_file=:memory:"])
    try:
        kc = km.client()
        kc.start_channels()
        run_sync(kc.wait_for_ready)(timeout=120)
        run_sync(kc.execute_interactive)(STUDENT, timeout=120)
        kc.stop_channels()
        source = new_notebook(cells=[new_code_cell(STUDENT, metadata={"nbgrader": {
            "grade": False, "grade_id": "answer", "locked": False, "solution": True}})])
        trusted = TrustedTests(source, {}, lambda: Boundary(km))
        trusted.deadline = time.monotonic() + 3
        with pytest.raises(CallTimeout):
            trusted.ns["forever"]()
        trusted.deadline = time.monotonic() + 60
        trusted.boundary.deadline = trusted.deadline
        assert torch.equal(trusted.ns["scale"](torch.ones(2)), torch.full((2,), 2.0))
        with pytest.raises(KernelGone) as gone:  # seen as a death, not as a timeout
            trusted.ns["die"]()
        assert gone.type is KernelGone, gone.type.__name__
        trusted.boundary.close()
    finally:
        run_sync(km.shutdown_kernel)(now=True)
