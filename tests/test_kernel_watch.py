"""The notebook tests' kernel watch: a slow cell is left alone, an idle one fails fast."""

import time

import kernel_watch
import pytest
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.slow


def test_busy_cell_runs_on_and_idle_cell_fails_with_its_stack(monkeypatch, capfd):
    monkeypatch.setattr(kernel_watch, "IDLE_S", 8)
    monkeypatch.setattr(kernel_watch, "SAMPLE_S", 1)
    notebook = new_notebook(cells=[
        new_code_cell("import time\nstart = time.time()\n"
                      "while time.time() - start < 12:  # busy longer than IDLE_S\n    pass\n"
                      "print('busy done')"),
        new_code_cell("def waiting_on_nothing():\n    time.sleep(600)\n\nwaiting_on_nothing()"),
    ])
    client = kernel_watch.WatchedClient(notebook, kernel_name="python3")
    start = time.monotonic()
    with pytest.raises(kernel_watch.KernelHung, match=r"cell 1 \('def waiting_on_nothing") \
            as caught:
        client.execute()
    assert time.monotonic() - start < 300, "the idle cell was not caught before its timeout"
    assert notebook.cells[0].outputs[0].text == "busy done\n"
    # The kernel's stack says where it waited: in the message, or (under pytest) its stderr.
    assert "in waiting_on_nothing" in str(caught.value) + capfd.readouterr().err
