"""A ventana client in Python, as another team's service would write it.

It uses only what ventana documents (docs/api.md, docs/events.md, the .proto): it computes
a conversation's subject itself, publishes input events as JSON and as protobuf, asks the
API (resolve, state, check, send, decision, expiring), and reads the outputs with durable
consumers, as JSON from VENTANA_OUT and as protobuf from VENTANA_OUT_PROTOBUF.

    python ventana_client.py --nats nats://127.0.0.1:4222 --run-id demo

Prints one JSON line of what it did and saw; exits non-zero at the first surprise.
"""

import argparse
import asyncio
import base64
import json
import struct
from datetime import datetime, timezone

import nats
import xxhash
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js.api import ConsumerConfig, DeliverPolicy

from ventana.v1 import ventana_pb2


def digest(channel, account, channel_id, contact_id):
    """XXH3-128 of each field's length (u64, little-endian) and UTF-8 bytes, in order."""
    hasher = xxhash.xxh3_128()
    for field in (channel, account, channel_id, contact_id):
        data = field.encode()
        hasher.update(struct.pack("<Q", len(data)))
        hasher.update(data)
    return hasher.digest()  # 16 bytes, big-endian


def token_of(key):
    """Lower-case unpadded base32 of the digest: 26 characters."""
    return base64.b32encode(digest(**key)).decode().rstrip("=").lower()


def input_subject(key, partitions):
    partition = int.from_bytes(digest(**key), "big") % partitions
    return f"ventana.in.{partition}.{token_of(key)}"


def now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ServiceError(Exception):
    """An API error: the services framework's headers, and ventana's JSON body."""

    def __init__(self, status, body):
        super().__init__(f"{status}: {body['error']['message']}")
        self.status = status
        self.code = body["error"]["code"]


async def ask(nc, endpoint, request):
    reply = await nc.request(f"ventana.api.v1.{endpoint}", json.dumps(request).encode(), timeout=10)
    body = json.loads(reply.data)
    status = (reply.headers or {}).get("Nats-Service-Error-Code")
    if status:
        raise ServiceError(int(status), body)
    return body


async def expect(what, condition):
    if not condition:
        raise AssertionError(what)


async def main(url, run_id):
    nc = await nats.connect(url)
    js = nc.jetstream()
    info = json.loads((await nc.request("$SRV.INFO.ventana", b"", timeout=10)).data)
    partitions = int(info["metadata"]["partitions"])

    whatsapp = {"channel": "whatsapp", "account": "acme", "channel_id": "15550001111", "contact_id": f"py-{run_id}"}
    messenger = {"channel": "messenger", "account": "acme", "channel_id": "page-100", "contact_id": f"py-{run_id}"}
    tokens = {token_of(whatsapp), token_of(messenger)}

    # Durable consumers first, so every output of these conversations is read.
    json_outputs = await js.pull_subscribe(
        "ventana.out.>", durable=f"python-{run_id}",
        config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW))
    protobuf_outputs = await js.pull_subscribe(
        "ventana.pb.out.>", durable=f"python-pb-{run_id}", stream="VENTANA_OUT_PROTOBUF",
        config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW))

    # The subject computed here is the one ventana computes.
    for key in (whatsapp, messenger):
        resolved = await ask(nc, "resolve", {"conversation": key})
        await expect(f"resolve {resolved}", resolved["subject"] == input_subject(key, partitions))

    # A customer writes on WhatsApp (JSON) and on Messenger (protobuf).
    event = {"id": f"wamid-{run_id}", "type": "customer_message", "occurred_at": now(), "conversation": whatsapp}
    await js.publish(input_subject(whatsapp, partitions), json.dumps(event).encode(),
                     headers={"Nats-Msg-Id": event["id"]})
    occurred_at = Timestamp()
    occurred_at.GetCurrentTime()
    message = ventana_pb2.InputEvent(
        id=f"mid-{run_id}", occurred_at=occurred_at,
        conversation=ventana_pb2.ConversationKey(**messenger),
        customer_message=ventana_pb2.CustomerMessage())
    await js.publish(input_subject(messenger, partitions), message.SerializeToString(),
                     headers={"Nats-Msg-Id": message.id, "Content-Type": "application/x-protobuf"})

    # Both conversations open: read it from the outputs, then ask.
    opened = {}
    while len(opened) < 2:
        for msg in await json_outputs.fetch(10, timeout=10):
            await msg.ack()
            output = json.loads(msg.data)
            if output["type"] == "state_changed" and output["to"] == "open":
                opened[msg.subject.rsplit(".", 1)[1]] = output
    await expect(f"opened {sorted(opened)}", set(opened) == tokens)
    state = await ask(nc, "state", {"conversation": whatsapp})
    await expect(f"state {state}", state["state"] == "open" and state["token"] == token_of(whatsapp))

    # May an agent answer? Then send, twice with the same id: one decision.
    decision = await ask(nc, "check", {"conversation": whatsapp, "sender": "agent", "kind": "message"})
    await expect(f"check {decision}", decision["type"] == "outbound_accepted")
    send = {"id": f"reply-{run_id}", "conversation": messenger, "sender": "agent", "kind": "message"}
    first, again = await asyncio.gather(ask(nc, "send", send), ask(nc, "send", send))
    await expect(f"send {first} / {again}", first == again and first["type"] == "outbound_accepted")
    lost = await ask(nc, "decision", {"conversation": messenger, "id": send["id"]})
    await expect(f"decision {lost}", lost == first)

    # Errors come with the services framework's headers.
    try:
        await ask(nc, "check", {"conversation": whatsapp, "sender": "nobody", "kind": "message"})
        raise AssertionError("a bad check was answered")
    except ServiceError as error:
        await expect(f"error {error}", (error.status, error.code) == (400, "bad_request"))

    page = await ask(nc, "expiring", {"within": "25h", "limit": 1000})
    expiring = {row["token"] for row in page["conversations"]}
    await expect(f"expiring {page}", tokens <= expiring)

    # The same outputs as protobuf, in the same order.
    copies = []
    while not any(c.WhichOneof("body") == "outbound_accepted" for c in copies):
        for msg in await protobuf_outputs.fetch(10, timeout=10):
            await msg.ack()
            output = ventana_pb2.OutputEvent()
            output.ParseFromString(msg.data)
            if msg.subject.rsplit(".", 1)[1] in tokens:
                copies.append(output)
    accepted = next(c for c in copies if c.WhichOneof("body") == "outbound_accepted")
    await expect(f"protobuf copy {accepted}", accepted.id == first["id"])

    print(json.dumps({
        "partitions": partitions,
        "tokens": sorted(tokens),
        "opened": sorted(o["id"] for o in opened.values()),
        "decision": first["id"],
        "protobuf_outputs": [c.id for c in copies],
    }))
    await nc.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--run-id", default="example")
    args = parser.parse_args()
    asyncio.run(main(args.nats, args.run_id))
