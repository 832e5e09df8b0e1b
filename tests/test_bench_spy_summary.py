"""bench.spy_summary: inclusive shares of py-spy raw samples; recserve's code counts only
below the loop's callback frame; callbacks without any recserve frame are grpc.aio glue."""

from __future__ import annotations

from bench.spy_summary import DEFAULT_ROWS, frame_shares, table

MAIN = "<module> (services/gateway/__main__.py:28);run_forever (asyncio/base_events.py:607)"
RAW = "\n".join(
    [
        # 4 samples: the servicer with ONNX Runtime below it
        f"{MAIN};Handle._run (asyncio/events.py:80);_wrap_unary.<locals>.handler "
        "(services/platform/interceptors.py:117);Session.run (onnxruntime/x.py:395) 4",
        # 3 samples: a callback with no recserve frame (grpc.aio's own work)
        f"{MAIN};Handle._run (asyncio/events.py:80) 3",
        # 2 samples: the loop waiting
        f"{MAIN};EpollSelector.select (selectors.py:468) 2",
        # 1 sample: grpc's polling thread
        "Thread._bootstrap (threading.py:1002);Thread.run (threading.py:982) 1",
    ]
)


def test_shares(tmp_path):
    path = tmp_path / "gw.raw"
    path.write_text(RAW + "\n")
    total, shares = frame_shares(path, DEFAULT_ROWS)
    assert total == 10
    by = {name.split("(")[0].strip(" -"): v for name, v in shares.items()}
    assert by["grpc's polling thread"] == 0.1
    assert by["event loop waiting in epoll"] == 0.2
    assert by["event loop callbacks"] == 0.7
    assert by["recserve's code"] == 0.4  # not the 9 samples whose main is in services/
    assert by["ONNX Runtime"] == 0.4
    assert by["grpc.aio per-call glue"] == 0.3
    text = table([path, path], DEFAULT_ROWS)
    assert "| samples | 10 | 10 |" in text and text.count("30.0%") == 2
