"""Unit tests of the sans-IO core and the error decoding: no server."""

import pickle
import struct
import unittest

import framedrpc
from framedrpc import errors
from framedrpc.core import Catalog, FrameDecoder, Session, encode_frame
from framedrpc.proxy import Namespace


class Recorder:
    def __init__(self):
        self.value = self.error = None
        self.settled = 0
        self.on_notification = None

    def resolve(self, value):
        self.value = value
        self.settled += 1

    def reject(self, error):
        self.error = error
        self.settled += 1


class Frames(unittest.TestCase):
    def test_split_and_joined_frames_decode_in_order(self):
        stream = encode_frame(b'{"a":1}') + encode_frame(b"") + encode_frame(b"[2]")
        decoder = FrameDecoder()
        out = []
        for i in range(len(stream)):  # one byte at a time
            out += decoder.feed(stream[i : i + 1])
        self.assertEqual(out, [b'{"a":1}', b"", b"[2]"])
        self.assertEqual(FrameDecoder().feed(stream), out)
        self.assertEqual(decoder.pending_bytes, 0)

    def test_an_oversized_header_is_a_protocol_error(self):
        decoder = FrameDecoder(max_frame=10)
        self.assertEqual(decoder.feed(struct.pack(">I", 10) + b"x" * 10), [b"x" * 10])
        with self.assertRaises(framedrpc.ProtocolError) as caught:
            decoder.feed(struct.pack(">I", 11))
        self.assertIn("exceeds the maximum of 10", str(caught.exception))
        self.assertIsInstance(caught.exception, ConnectionError)

    def test_a_tls_record_is_named(self):
        with self.assertRaisesRegex(framedrpc.ProtocolError, "speaks TLS"):
            FrameDecoder().feed(bytes([0x15, 0x03, 0x03, 0x00, 0x02]))


class ErrorDecoding(unittest.TestCase):
    CASES = {
        -32700: errors.ParseError,
        -32600: errors.InvalidRequest,
        -32601: errors.MethodNotFound,
        -32602: errors.InvalidParams,
        -32603: errors.InternalError,
        -32000: errors.ServerBusy,
        -32001: errors.FrameTooLarge,
        -32002: errors.DeadlineExceeded,
        -32003: errors.Unauthorized,
        -32004: errors.TooManyConnections,
        -32005: errors.ShuttingDown,
        1000: errors.ApplicationError,
        4242: errors.ServerError,
    }

    def test_every_code_has_its_class_with_code_message_and_data(self):
        for code, cls in self.CASES.items():
            e = errors.error_from_object({"code": code, "message": "m", "data": [1]})
            self.assertIs(type(e), cls, code)
            self.assertIsInstance(e, framedrpc.RpcError)
            self.assertEqual((e.code, e.message, e.data), (code, "m", [1]))
            copy = pickle.loads(pickle.dumps(e))
            self.assertEqual((type(copy), copy.code, copy.data), (cls, code, [1]))

    def test_standard_families(self):
        self.assertIsInstance(errors.error_from_object({"code": -32002, "message": ""}), TimeoutError)
        self.assertIsInstance(errors.error_from_object({"code": -32004, "message": ""}), ConnectionError)
        self.assertIsInstance(errors.error_from_object({"code": -32001, "message": ""}), ConnectionError)
        self.assertIsInstance(errors.error_from_object({"code": -32602, "message": ""}), TypeError)

    def test_application_error_kind_for_every_serde_enum_shape(self):
        def kind(data):
            e = errors.error_from_object({"code": 1000, "message": "x", "data": data})
            return e.kind, e.value

        self.assertEqual(kind("DivisionByZero"), ("DivisionByZero", None))  # unit
        self.assertEqual(kind({"Io": "disk"}), ("Io", "disk"))  # newtype
        self.assertEqual(kind({"Pair": [1, 2]}), ("Pair", [1, 2]))  # tuple
        self.assertEqual(kind({"NotFinite": {"operation": "pow"}}), ("NotFinite", {"operation": "pow"}))  # struct
        self.assertEqual(kind({"a": 1, "b": 2}), (None, None))
        self.assertEqual(kind(7), (None, None))

    def test_malformed_error_objects_still_give_an_rpc_error(self):
        for bad in (None, "x", {"message": "no code"}, {"code": "1", "message": "m"}, {"code": True}):
            self.assertIsInstance(errors.error_from_object(bad), errors.ServerError)
        no_data = errors.error_from_object({"code": 1, "message": "m"})
        self.assertFalse(no_data.has_data)


class Sessions(unittest.TestCase):
    def test_answers_match_by_id_in_any_order(self):
        s = Session()
        a, b = Recorder(), Recorder()
        ida, body = s.request("add", [1, 2], a, timeout_ms=1500)
        self.assertEqual(body, b'{"jsonrpc":"2.0","method":"add","id":%d,"params":[1,2],"timeout_ms":1500}' % ida)
        idb, _ = s.request("hello", {"name": "Zé"}, b)
        s.receive(b'{"jsonrpc":"2.0","result":"Ol\xc3\xa1","id":%d}' % idb)
        s.receive(b'{"jsonrpc":"2.0","error":{"code":1000,"message":"m","data":"DivisionByZero"},"id":%d}' % ida)
        self.assertEqual(b.value, "Olá")
        self.assertEqual(a.error.kind, "DivisionByZero")
        self.assertEqual(s.in_flight, 0)
        s.receive(b'{"jsonrpc":"2.0","result":1,"id":%d}' % ida)  # a stray answer: ignored
        self.assertEqual(a.settled, 1)

    def test_a_batch_entry_the_array_does_not_answer_is_rejected(self):
        s = Session()
        x, y, z = Recorder(), Recorder(), Recorder()
        ids, body = s.batch([("add", [1, 2], x), ("nope", None, y), ("ping", None, None), ("sub", [1], z)])
        self.assertIsNone(ids[2])
        s.receive_message(
            [
                {"jsonrpc": "2.0", "result": 3, "id": ids[0]},
                {"jsonrpc": "2.0", "error": {"code": -32600, "message": "bad"}, "id": None},
                {"jsonrpc": "2.0", "error": {"code": -32601, "message": "nf"}, "id": ids[1]},
            ]
        )
        self.assertEqual(x.value, 3)
        self.assertIsInstance(y.error, errors.MethodNotFound)
        self.assertIsInstance(z.error, errors.InvalidRequest)  # the null-id error goes to the unanswered member

    def test_server_requests_notices_and_in_reply_to(self):
        s = Session()
        self.assertEqual(s.receive(b'{"jsonrpc":"2.0","method":"rpc.ping","id":"p"}'), [b'{"jsonrpc":"2.0","result":"pong","id":"p"}'])
        self.assertIn(b"-32601", s.receive(b'{"jsonrpc":"2.0","method":"other","id":1}')[0])
        seen = []
        w = Recorder()
        w.on_notification = lambda m, p: seen.append((m, p))
        rid, _ = s.request("run", [2], w)
        s.receive(b'{"jsonrpc":"2.0","method":"progress","params":[1,2],"in_reply_to":%d}' % rid)
        self.assertEqual(seen, [("progress", [1, 2])])
        self.assertFalse(s.draining)
        s.receive(b'{"jsonrpc":"2.0","method":"rpc.shutdown","params":{"grace_ms":10}}')
        self.assertTrue(s.draining)

    def test_garbage_is_a_protocol_error(self):
        for body in (b"not json", b"3", b'{"jsonrpc":"2.0"}', b"[1]"):
            with self.assertRaises(framedrpc.ProtocolError, msg=body):
                Session().receive(body)

    def test_null_id_errors_are_kept_for_the_close(self):
        s = Session()
        s.receive(b'{"jsonrpc":"2.0","error":{"code":-32004,"message":"too many"},"id":null}')
        self.assertIsInstance(s.closing_error, errors.TooManyConnections)

    def test_oversized_requests_and_nan_are_refused_before_sending(self):
        s = Session(max_frame=100)
        with self.assertRaises(framedrpc.RequestTooLarge):
            s.request("echo", ["x" * 200], Recorder())
        with self.assertRaises(ValueError):
            s.request("add", [float("nan"), 1], Recorder())
        circular = []
        circular.append(circular)
        with self.assertRaisesRegex(ValueError, "Circular reference"):
            Session().request("add", circular, Recorder())
        with self.assertRaises(TypeError):
            s.request("add", [object()], Recorder())
        self.assertEqual(s.in_flight, 0)

    def test_requests_are_the_bytes_json_dumps_writes(self):
        # The body is built without a dict; it must stay what json.dumps
        # of the message dict writes, for any method name and params.
        import json

        s = Session()
        for method, params, timeout_ms in [
            ("add", [1, 2.5], 30000),
            ('quo"te\\é\n', {"nested": [None, True, "ü"], "n": -1}, None),
            ("calc.add", None, 0),
            ("hello", "text", None),
        ]:
            request_id, body = s.request(method, params, Recorder(), timeout_ms)
            message = {"jsonrpc": "2.0", "method": method, "id": request_id}
            if params is not None:
                message["params"] = params
            if timeout_ms is not None:
                message["timeout_ms"] = timeout_ms
            expected = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
            self.assertEqual(body, expected)

    def test_frames_with_white_space_around_the_value_decode(self):
        s = Session()
        w = Recorder()
        request_id, _ = s.request("add", [1, 2], w)
        s.receive(b' \n{"jsonrpc":"2.0","result":3,"id":%d}\r\n ' % request_id)
        self.assertEqual(w.value, 3)
        with self.assertRaisesRegex(framedrpc.ProtocolError, "not JSON"):
            s.receive(b'{"jsonrpc":"2.0","result":3,"id":1} x')
        with self.assertRaisesRegex(framedrpc.ProtocolError, "not JSON"):
            s.receive(b'\xff{}')


DOC = {
    "openrpc": "1.3.2",
    "info": {"title": "T", "version": "1"},
    "methods": [
        {"name": "calc.add", "params": [{"name": "a", "required": True, "schema": {"type": "number"}},
                                         {"name": "b", "required": True, "schema": {"type": "number"}}],
         "result": {"name": "r", "schema": {"type": "number"}}, "description": "Adds.", "x-aliases": ["soma"]},
        {"name": "greet", "paramStructure": "by-name",
         "params": [{"name": "name", "required": True}, {"name": "punct", "required": False}]},
        {"name": "pos", "paramStructure": "by-position", "params": [{"name": "x"}, {"name": "y"}]},
    ],
}


class Catalogs(unittest.TestCase):
    def setUp(self):
        self.sent = []
        self.ns = Namespace(Catalog(DOC).tree(), lambda m, p: self.sent.append((m, p)) or "ok")

    def test_namespaces_aliases_and_dir(self):
        self.ns.calc.add(1, 2)
        self.ns.soma(a=1, b=2)
        self.assertEqual(self.sent, [("calc.add", [1, 2]), ("calc.add", {"a": 1, "b": 2})])
        self.assertEqual(set(dir(self.ns)), {"calc", "greet", "pos", "soma"})
        self.assertIn("add", dir(self.ns.calc))
        self.assertIn("Adds.", self.ns.calc.add.__doc__)
        with self.assertRaises(AttributeError):
            self.ns.nope

    def test_wrong_arguments_fail_locally(self):
        for call in (lambda: self.ns.calc.add(1), lambda: self.ns.calc.add(1, 2, 3), lambda: self.ns.calc.add(1, c=2)):
            with self.assertRaises(TypeError):
                call()
        self.assertEqual(self.sent, [])

    def test_param_structures(self):
        self.ns.greet("Zé")
        self.ns.pos(y=2)
        self.ns.pos()
        self.ns.pos(1)
        self.ns.pos(1, 2)
        with self.assertRaises(TypeError):
            self.ns.pos(1, 2, 3)
        self.assertEqual(
            self.sent,
            [("greet", {"name": "Zé"}), ("pos", [None, 2]), ("pos", None), ("pos", [1]), ("pos", [1, 2])],
        )


class Sink:
    def __init__(self):
        self.items = []
        self.ends = []

    def on_item(self, value, size):
        self.items.append((value, size))

    def on_end(self, error):
        self.ends.append(error)


def _item(stream, value_text):
    return b'{"jsonrpc":"2.0","method":"rpc.item","params":{"stream":%d,"value":%s}}' % (stream, value_text)


class Streams(unittest.TestCase):
    def open(self, credit=None):
        import json

        session = Session()
        waiter, sink = Recorder(), Sink()
        request_id, body = session.stream_request("count", [12], waiter, sink, credit=credit)
        sent = json.loads(body)
        self.assertEqual(sent.get("credit"), credit)
        return session, waiter, sink, request_id

    def test_the_wire_of_protocol_md_byte_for_byte(self):
        # PROTOCOL.md, "A whole stream, byte by byte": count(12) with a 10-byte window.
        session, waiter, sink, request_id = self.open(credit=10)
        replies = session.receive(b'{"jsonrpc":"2.0","result":{"stream":1},"id":%d}' % request_id)
        self.assertEqual((replies, waiter.value), ([], 1))
        for i in range(10):
            self.assertEqual(session.receive(_item(1, b"%d" % i)), [])
        self.assertEqual(sink.items, [(i, 1) for i in range(10)])
        grants = [session.consumed(1, size) for _, size in sink.items]
        self.assertEqual(grants[:4], [None] * 4)  # half of 10 bytes not reached yet
        self.assertEqual(grants[4], b'{"jsonrpc":"2.0","method":"rpc.credit","params":{"stream":1,"bytes":5}}')
        self.assertEqual(grants[9], b'{"jsonrpc":"2.0","method":"rpc.credit","params":{"stream":1,"bytes":5}}')
        session.receive(_item(1, b"10"))
        session.receive(_item(1, b"11"))
        session.receive(b'{"jsonrpc":"2.0","method":"rpc.end","params":{"stream":1}}')
        self.assertEqual(sink.items[10:], [(10, 2), (11, 2)])
        self.assertEqual(sink.ends, [None])
        self.assertIsNone(session.consumed(1, 2))  # ended: no credit
        self.assertIsNone(session.unsubscribe(1))  # ended: nothing to unsubscribe
        self.assertEqual(session.open_streams, 0)

    def test_running_out_of_items_grants_what_was_read(self):
        session, _, sink, request_id = self.open(credit=150)
        session.receive(b'{"jsonrpc":"2.0","result":{"stream":1},"id":%d}' % request_id)
        session.receive(_item(1, b'"' + b"a" * 54 + b'"'))
        self.assertIsNone(session.consumed(1, 56))  # under half the window
        self.assertEqual(session.starved(1), b'{"jsonrpc":"2.0","method":"rpc.credit","params":{"stream":1,"bytes":56}}')
        self.assertIsNone(session.starved(1))  # nothing more to grant

    def test_item_sizes_are_measured_in_the_frame(self):
        session, _, sink, request_id = self.open()
        session.receive(b'{"jsonrpc":"2.0","result":{"stream":3},"id":%d}' % request_id)
        session.receive(_item(3, b'"ab"'))
        session.receive(_item(3, b'{"a":1}'))
        session.receive(_item(3, b"1e20"))  # exact here, whatever Python would write
        session.receive(_item(3, '"ol\u00e1"'.encode()))
        # Another layout: re-encoded compactly (an approximation).
        session.receive(b'{"params":{"value":{"b": [1, 2]},"stream":3},"method":"rpc.item","jsonrpc":"2.0"}')
        self.assertEqual([size for _, size in sink.items], [4, 7, 4, 6, len(b'{"b":[1,2]}')])

    def test_a_server_over_the_credit_breaks_the_stream(self):
        session, _, sink, request_id = self.open(credit=10)
        session.receive(b'{"jsonrpc":"2.0","result":{"stream":1},"id":%d}' % request_id)
        self.assertEqual(session.receive(_item(1, b'"' + b"x" * 20 + b'"')), [])  # larger than the window, nothing outstanding: allowed
        replies = session.receive(_item(1, b"1"))
        self.assertEqual(replies, [b'{"jsonrpc":"2.0","method":"rpc.unsubscribe","params":{"stream":1}}'])
        self.assertEqual(len(sink.items), 1)
        self.assertIsInstance(sink.ends[0], errors.ProtocolError)
        self.assertEqual(session.receive(_item(1, b"2")), [])  # later items: ignored
        self.assertEqual(len(sink.items), 1)

    def test_error_ends_unsubscribe_refusals_and_a_lost_connection(self):
        session, _, sink, request_id = self.open()
        session.receive(b'{"jsonrpc":"2.0","result":{"stream":2},"id":%d}' % request_id)
        session.receive(b'{"jsonrpc":"2.0","method":"rpc.end","params":{"stream":2,"error":'
                        b'{"code":1000,"message":"Broken","data":{"Broken":{"after":3}}}}}')
        self.assertIsInstance(sink.ends[0], errors.ApplicationError)
        self.assertEqual(sink.ends[0].kind, "Broken")

        session, _, sink, request_id = self.open()
        session.receive(b'{"jsonrpc":"2.0","result":{"stream":5},"id":%d}' % request_id)
        self.assertEqual(session.unsubscribe(5), b'{"jsonrpc":"2.0","method":"rpc.unsubscribe","params":{"stream":5}}')
        session.receive(_item(5, b"1"))  # on its way before the unsubscribe: ignored
        self.assertEqual((sink.items, sink.ends), ([], []))

        session, waiter, sink, request_id = self.open()
        session.receive(b'{"jsonrpc":"2.0","error":{"code":1000,"message":"no","data":"NickTaken"},"id":%d}' % request_id)
        self.assertEqual(waiter.error.kind, "NickTaken")
        self.assertEqual(session.open_streams, 0)

        session, _, sink, request_id = self.open()
        session.receive(b'{"jsonrpc":"2.0","result":{"stream":1},"id":%d}' % request_id)
        session.fail_all(lambda: ConnectionResetError("gone"))
        self.assertIsInstance(sink.ends[0], ConnectionResetError)

    def test_an_opening_given_up_on_is_unsubscribed_if_it_opens_late(self):
        session, waiter, sink, request_id = self.open()
        self.assertTrue(session.forget(request_id))  # a local timeout
        replies = session.receive(b'{"jsonrpc":"2.0","result":{"stream":9},"id":%d}' % request_id)
        self.assertEqual(replies, [b'{"jsonrpc":"2.0","method":"rpc.unsubscribe","params":{"stream":9}}'])
        self.assertEqual(waiter.settled, 0)


if __name__ == "__main__":
    unittest.main()
