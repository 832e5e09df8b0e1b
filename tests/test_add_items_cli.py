"""`recserve add-items FILE` against a stub gateway on port 0: JSON lines parsed whole before
anything is sent, batches of --batch, the gateway's status reported on failure."""

from __future__ import annotations

import json
from concurrent import futures

import grpc
import pytest

from recserve.cli import main
from recserve.v1 import common_pb2, gateway_pb2_grpc


class StubGateway(gateway_pb2_grpc.GatewayServicer):
    def __init__(self) -> None:
        self.calls: list[list[common_pb2.NewItem]] = []

    def AddItems(self, request, context):
        self.calls.append(list(request.items))
        if any(i.item_id == "refused" for i in request.items):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "item 'refused': bad")
        return common_pb2.AddItemsResponse(
            items=[
                common_pb2.AddedItem(row=0 if i.item_id == "old" else 10, item=i)
                for i in request.items
            ],
            bundle_version="v1",
        )


@pytest.fixture
def gateway():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    stub = StubGateway()
    gateway_pb2_grpc.add_GatewayServicer_to_server(stub, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield stub, f"127.0.0.1:{port}"
    server.stop(None)


def write(tmp_path, rows) -> str:
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_items_go_out_in_batches(gateway, tmp_path, capsys):
    stub, target = gateway
    rows = [{"item_id": f"n{i}", "title": f"New {i}", "tags": ["a"]} for i in range(5)]
    rows += ["", {"item_id": "old", "description": "known", "embedding": [0.5, 1, -2]}]
    code = main(["add-items", write(tmp_path, rows), "--batch", "2", "--target", target])
    assert code == 0
    assert [len(c) for c in stub.calls] == [2, 2, 2]
    sent = [i for call in stub.calls for i in call]
    assert sent[0].title == "New 0" and list(sent[0].tags) == ["a"]
    assert list(sent[-1].embedding) == [0.5, 1.0, -2.0] and sent[-1].description == "known"
    assert "added 5 item(s); 1 already in the bundle" in capsys.readouterr().out


@pytest.mark.parametrize(
    "line",
    ['{"title": "no id"}', "not json", '{"item_id": "x", "tags": "a,b"}',
     '{"item_id": "x", "embedding": ["a"]}', '{"item_id": "x", "price": 3}'],
)  # fmt: skip
def test_a_bad_line_sends_nothing(gateway, tmp_path, capsys, line):
    stub, target = gateway
    path = write(tmp_path, [{"item_id": "fine", "title": "F"}, line])
    assert main(["add-items", path, "--target", target]) == 2
    assert stub.calls == [] and "items.jsonl:2" in capsys.readouterr().err


def test_the_gateway_status_is_reported(gateway, tmp_path, capsys):
    stub, target = gateway
    path = write(tmp_path, [{"item_id": "a", "title": "A"}, {"item_id": "refused", "title": "R"}])
    assert main(["add-items", path, "--batch", "1", "--target", target]) == 1
    assert len(stub.calls) == 2 and "INVALID_ARGUMENT" in capsys.readouterr().err
