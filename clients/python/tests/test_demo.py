"""The package against a real `rpc-demo serve` (started per test class)."""

import asyncio
import json
import threading
import unittest

import framedrpc
from framedrpc import errors

from .support import LIMIT, DemoServer, FakeServer, read_request, frame, tls_files


class Calls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = DemoServer()
        cls.proxies = {s: framedrpc.connect(cls.server.url(s), timeout=LIMIT) for s in ("tcp", "http")}

    @classmethod
    def tearDownClass(cls):
        for p in cls.proxies.values():
            p.close()
        cls.server.__exit__()

    def each(self):
        for scheme, proxy in self.proxies.items():
            with self.subTest(scheme=scheme):
                yield proxy

    def test_every_demo_method_by_position_and_by_name(self):
        for p in self.each():
            self.assertEqual(p.add(2, 3), 5)
            self.assertEqual(p.add(a=2, b=3), 5)
            self.assertEqual(p.sub(2, 3), -1)
            self.assertEqual(p.sub(b=3, a=2), -1)
            self.assertEqual(p.mul(4, 5), 20)
            self.assertEqual(p.div(1, 4), 0.25)
            self.assertEqual(p.pow(2, 10), 1024)
            self.assertEqual(p.hello("Zé"), "Olá, Zé!")
            self.assertEqual(p.hello(name="João"), "Olá, João!")
            self.assertEqual(p.echo("fim ☃"), "fim ☃")
            self.assertEqual(p.sleep(1), 1)
            self.assertEqual(p.soma(1, 2), 3)  # aliases
            self.assertEqual(p.mult(2, 3), 6)
            self.assertEqual(p.pot(2, 3), 8)
            self.assertEqual(p.call("rpc.ping"), "pong")

    def test_discovery_gives_dir_help_and_local_type_errors(self):
        p = self.proxies["tcp"]
        for name in ("add", "sub", "mul", "div", "pow", "hello", "echo", "sleep", "soma", "mult", "pot"):
            self.assertIn(name, dir(p))
        import inspect
        import pydoc

        self.assertEqual(str(inspect.signature(p.add)), "(a: float, b: float) -> float")
        text = pydoc.render_doc(p.div, renderer=pydoc.plaintext)
        self.assertIn("DivisionByZero", text)
        self.assertIn("div(a: float, b: float)", text)
        for bad in (lambda: p.add(1), lambda: p.add(1, 2, 3), lambda: p.add(1, b=2, c=3), lambda: p.hello()):
            with self.assertRaises(TypeError):
                bad()
        with self.assertRaises(AttributeError):
            p.nope
        # A misspelt keyword is named before the argument it leaves missing.
        with self.assertRaisesRegex(TypeError, r"^add\(\) got an unexpected keyword argument 'c'"):
            p.add(a=1, c=2)
        # help(proxy) lists the remote methods, once each, with their aliases.
        text = pydoc.render_doc(p, renderer=pydoc.plaintext)
        self.assertIn("add(a: float, b: float) -> float  (also: soma)", text)
        self.assertIn("chat.join(room: str, nick: str)", text)
        self.assertNotIn("    pot(", text)
        self.assertIsInstance(p, framedrpc.Proxy)

    def test_errors_the_server_answers(self):
        for p in self.each():
            with self.assertRaises(errors.ApplicationError) as e:
                p.div(1, 0)
            self.assertEqual((e.exception.code, e.exception.data, e.exception.kind), (1000, "DivisionByZero", "DivisionByZero"))
            with self.assertRaises(errors.ApplicationError) as e:
                p.pow(10, 400)
            self.assertEqual(e.exception.kind, "NotFinite")
            self.assertEqual(e.exception.value, {"operation": "pow"})
            with self.assertRaises(errors.MethodNotFound) as e:
                p.call("nope")
            self.assertEqual(e.exception.code, -32601)
            with self.assertRaises(errors.InvalidParams) as e:
                p.call("add", [1, "x"])
            self.assertIn("`b`", e.exception.message)
            with self.assertRaises(errors.InvalidParams):
                p.call("add", {"a": 1, "c": 2})
            with self.assertRaises(errors.DeadlineExceeded):
                p.with_timeout(0.2).sleep(3000)
            self.assertEqual(p.add(1, 1), 2)  # the connection is still good

    def test_eight_threads_of_a_thousand_calls_on_one_proxy(self):
        p = self.proxies["tcp"]
        failures = []

        def work(t):
            try:
                for i in range(1000):
                    got = p.add(t, i) if i % 2 else p.add(a=t, b=i)
                    if got != t + i:
                        failures.append((t, i, got))
            except BaseException as e:
                failures.append(e)

        threads = [threading.Thread(target=work, args=(t * 10000,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads), "a thread hung")
        self.assertEqual(failures, [])

    def test_batches(self):
        for p in self.each():
            with p.batch() as b:
                x = b.add(1, 2)
                y = b.div(1, 0)
                b.notify("echo", ["ignored"])
                z = b.hello(name="Ana")
                with self.assertRaises(RuntimeError):
                    x.result()  # not sent yet
            self.assertEqual(x.result(), 3)
            with self.assertRaises(errors.ApplicationError):
                y.result()
            self.assertEqual(z.result(), "Olá, Ana!")
            with self.assertRaises(TypeError):
                with p.batch() as b:
                    b.add(1)

    def test_notifications(self):
        for p in self.each():
            self.assertIsNone(p.notify("add", [1, 2]))
            self.assertIsNone(p.notify("nope"))  # not even an error
            self.assertEqual(p.add(1, 2), 3)

    def test_timeouts_run_concurrently_with_other_calls(self):
        p = self.proxies["tcp"]
        results = []
        slow = threading.Thread(target=lambda: results.append(p.sleep(300)))
        slow.start()
        self.assertEqual(p.add(1, 1), 2)  # not queued behind the slow call
        slow.join(LIMIT)
        self.assertEqual(results, [300])


class AsyncCalls(unittest.TestCase):
    def test_asyncio_proxy(self):
        with DemoServer() as server:
            async def main():
                for scheme in ("tcp", "http"):
                    p = await framedrpc.aconnect(server.url(scheme), timeout=LIMIT)
                    self.assertIn("add", dir(p))
                    self.assertEqual(await p.add(2, 3), 5)
                    self.assertEqual(await p.hello(name="Zé"), "Olá, Zé!")
                    got = await asyncio.gather(*(p.add(i, i) for i in range(200)))
                    self.assertEqual(got, [2 * i for i in range(200)])
                    with self.assertRaises(errors.ApplicationError):
                        await p.div(1, 0)
                    with self.assertRaises(TypeError):
                        p.add(1)
                    async with p.batch() as b:
                        x = b.add(1, 2)
                        y = b.div(1, 0)
                    self.assertEqual(x.result(), 3)
                    with self.assertRaises(errors.ApplicationError):
                        y.result()
                    with self.assertRaises(errors.DeadlineExceeded):
                        await p.with_timeout(0.2).sleep(3000)
                    await p.close()

            asyncio.run(asyncio.wait_for(main(), 60))


class Cancellation(unittest.TestCase):
    def test_cancelling_an_asyncio_call_sends_rpc_cancel(self):
        seen = []
        arrived = threading.Event()

        def script(conn):
            request = read_request(conn)  # the call; never answered
            seen.append(request)
            arrived.set()
            seen.append(read_request(conn))  # what follows: the cancel

        with FakeServer(script) as fake:
            async def main():
                p = await framedrpc.aconnect(fake.url, discover_methods=False, timeout=LIMIT)
                task = asyncio.ensure_future(p.work(1))
                await asyncio.get_running_loop().run_in_executor(None, arrived.wait, LIMIT)
                task.cancel()
                with self.assertRaises(asyncio.CancelledError):
                    await task
                await p.close()

            asyncio.run(asyncio.wait_for(main(), 30))
            fake.thread.join(LIMIT)
        call, cancel = seen
        self.assertEqual(call["method"], "work")
        self.assertEqual(cancel, {"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": call["id"]}})

    def test_a_local_timeout_sends_rpc_cancel_and_timeout_ms(self):
        seen = []

        def script(conn):
            seen.append(read_request(conn))
            seen.append(read_request(conn))

        with FakeServer(script) as fake:
            p = framedrpc.connect(fake.url, discover_methods=False)
            with self.assertRaises(errors.DeadlineExceeded) as e:
                p.with_timeout(0.3).work()
            self.assertTrue(e.exception.local)
            fake.thread.join(LIMIT)
            p.close()
        call, cancel = seen
        self.assertTrue(0 < call["timeout_ms"] <= 300, call)
        self.assertEqual(cancel["method"], "rpc.cancel")
        self.assertEqual(cancel["params"], {"id": call["id"]})
        self.assertNotIn("id", cancel)


class Security(unittest.TestCase):
    def test_token_over_tcp_and_http(self):
        with DemoServer(token="s3cret") as server:
            for scheme in ("tcp", "http"):
                with self.subTest(scheme=scheme):
                    with framedrpc.connect(server.url(scheme), token="s3cret") as p:
                        self.assertEqual(p.add(2, 3), 5)
                    with self.assertRaises(errors.Unauthorized) as e:
                        framedrpc.connect(server.url(scheme), token="wrong")
                    self.assertEqual(e.exception.code, -32003)
                    self.assertNotIn("token=", str(e.exception))
                    with self.assertRaises(errors.Unauthorized) as e:
                        framedrpc.connect(server.url(scheme))
                    self.assertIn("framedrpc.connect(url, token=...)", str(e.exception))

    def test_a_url_without_scheme_is_tcp_and_a_refused_connection_names_the_address(self):
        with DemoServer() as server:
            host_port = server.url("tcp")[len("tcp://"):]
            with framedrpc.connect(host_port) as p:
                self.assertEqual(p.add(2, 3), 5)
                self.assertEqual(p.client.address.scheme, "tcp")
            port = server.url("tcp").rsplit(":", 1)[1]
        # The server is gone: its port refuses.
        with self.assertRaises(ConnectionRefusedError) as e:
            framedrpc.connect(f"127.0.0.1:{port}")
        self.assertIn(f"could not connect to 127.0.0.1:{port}", str(e.exception))

        async def refused():
            with self.assertRaises(ConnectionRefusedError) as e:
                await framedrpc.aconnect(f"tcp://127.0.0.1:{port}")
            self.assertIn(f"could not connect to 127.0.0.1:{port}", str(e.exception))

        asyncio.run(asyncio.wait_for(refused(), 60))

    def test_tls_and_https_with_a_ca_file(self):
        ca, _, _ = tls_files()
        with DemoServer(tls=True, token="t") as server:
            for scheme in ("tls", "https"):
                with self.subTest(scheme=scheme):
                    with framedrpc.connect(server.url(scheme), ca_file=ca, token="t") as p:
                        self.assertEqual(p.hello("TLS"), "Olá, TLS!")
                        with p.batch() as b:
                            x = b.add(1, 2)
                        self.assertEqual(x.result(), 3)
            import ssl

            with self.assertRaises(ssl.SSLCertVerificationError):
                framedrpc.connect(server.url("tls"), token="t")  # the system CAs do not know this one
            with self.assertRaises(ConnectionError) as e:
                framedrpc.connect(server.url("tcp"), token="t", timeout=LIMIT)  # plain TCP on a TLS port
            async def main():
                p = await framedrpc.aconnect(server.url("tls"), ca_file=ca, token="t")
                self.assertEqual(await p.add(1, 2), 3)
                await p.close()

            asyncio.run(asyncio.wait_for(main(), 30))


class Limits(unittest.TestCase):
    def test_busy_too_many_connections_and_frame_too_large(self):
        with DemoServer(extra=["--max-in-flight", "2", "--max-connections", "1", "--max-frame", "32768"]) as server:
            # 32 KiB: the rpc.discover document (about 10 KB) fits, an echo of 40 000 bytes does not.
            p = framedrpc.connect(server.url("tcp"), timeout=LIMIT)
            outcomes = []
            threads = [threading.Thread(target=lambda: outcomes.append(_outcome(lambda: p.sleep(500)))) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(LIMIT)
            self.assertEqual(sorted(map(str, outcomes)).count("500"), 2, outcomes)
            self.assertEqual([type(o) for o in outcomes if not isinstance(o, int)], [errors.ServerBusy])
            with self.assertRaises(errors.TooManyConnections):
                framedrpc.connect(server.url("tcp"), timeout=LIMIT)
            with self.assertRaises(errors.FrameTooLarge):
                p.echo("x" * 40000)
            p.close()


class Draining(unittest.TestCase):
    def test_after_the_shutdown_notice_calls_in_flight_finish_and_new_ones_go_elsewhere(self):
        import signal

        server = DemoServer()
        try:
            p = framedrpc.connect(server.url("tcp"), timeout=LIMIT)
            conn = p.client._conn
            out = []
            slow = threading.Thread(target=lambda: out.append(_outcome(lambda: p.sleep(1000))))
            slow.start()
            # Once the sleep is sent (its thread waits for the answer, reading
            # or parked behind a reader), the answer to a later call on the
            # connection means the server has read the sleep's frame too: it
            # is in flight there when the server starts stopping.
            waited = threading.Event()
            deadline = LIMIT
            while not (conn._reading and conn.session.in_flight == 1) and deadline > 0:
                waited.wait(0.01)
                deadline -= 0.01
            self.assertEqual(conn.session.in_flight, 1, "the sleep was not sent")
            self.assertEqual(p.add(1, 1), 2)
            server.process.send_signal(signal.SIGINT)  # graceful stop: rpc.shutdown, then a grace period
            deadline = LIMIT
            while not conn.session.draining and deadline > 0:
                waited.wait(0.01)
                deadline -= 0.01
            self.assertTrue(conn.session.draining, "no rpc.shutdown notice arrived")
            before = next(conn.session._ids)
            try:
                p.add(1, 2)  # not sent on the draining connection: a new one is dialled
            except (ConnectionError, errors.ShuttingDown):
                pass  # the server no longer accepts, or refuses during its grace period
            self.assertEqual(next(conn.session._ids), before + 1, "a new call went to the draining connection")
            slow.join(LIMIT)
            self.assertEqual(out, [1000])
            self.assertEqual(server.process.wait(LIMIT), 0)
        finally:
            server.__exit__()


class DrainingStreams(unittest.TestCase):
    def test_a_graceful_shutdown_ends_open_streams_with_shutting_down(self):
        import signal

        server = DemoServer()
        try:
            p = framedrpc.connect(server.url("tcp"), timeout=LIMIT)
            posts = p.stream("live.watch", idle_timeout=LIMIT)
            self.assertEqual(p.live.publish("antes"), 1)
            server.process.send_signal(signal.SIGINT)
            self.assertEqual(next(posts)["text"], "antes")
            with self.assertRaises(errors.ShuttingDown):
                next(posts)
            self.assertTrue(posts.closed)
            p.close()
            self.assertEqual(server.process.wait(LIMIT), 0)
        finally:
            server.__exit__()


def _outcome(f):
    try:
        return f()
    except Exception as e:
        return e


class Reconnecting(unittest.TestCase):
    def test_the_next_call_redials_after_the_server_restarts(self):
        server = DemoServer()
        port = server.port
        try:
            for scheme in ("tcp", "http"):
                with self.subTest(scheme=scheme):
                    p = framedrpc.connect(server.url(scheme), timeout=LIMIT)
                    self.assertEqual(p.add(1, 2), 3)
                    server.__exit__()
                    with self.assertRaises(ConnectionError):
                        p.add(1, 2)
                    server = DemoServer(port=port)
                    self.assertEqual(p.add(2, 2), 4)
                    p.close()
        finally:
            server.__exit__()


class Faults(unittest.TestCase):
    def run_fake(self, answer):
        def script(conn):
            read_request(conn)
            conn.sendall(answer)

        with FakeServer(script) as fake:
            p = framedrpc.connect(fake.url, discover_methods=False, timeout=LIMIT)
            try:
                p.anything()
            finally:
                p.close()

    def test_garbage_frames_oversized_frames_and_closing_mid_call(self):
        with self.assertRaisesRegex(framedrpc.ProtocolError, "not JSON"):
            self.run_fake(frame(b"\x00garbage"))
        with self.assertRaisesRegex(framedrpc.ProtocolError, "exceeds the maximum"):
            self.run_fake(b"\x7f\xff\xff\xff")
        with self.assertRaisesRegex(ConnectionResetError, "middle of a frame"):
            self.run_fake(b"\x00\x00\x00\x10{}")
        with self.assertRaisesRegex(ConnectionResetError, "closed the connection"):
            self.run_fake(b"")
        with self.assertRaisesRegex(framedrpc.ProtocolError, "speaks HTTP"):
            self.run_fake(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    def test_namespaced_methods_from_a_described_server(self):
        doc = {"openrpc": "1.3.2", "info": {"title": "t", "version": "1"},
               "methods": [{"name": "calc.add", "params": [{"name": "a", "required": True}, {"name": "b", "required": True}]}]}

        def script(conn):
            while True:
                request = read_request(conn)
                if request is None:
                    return
                if request["method"] == "rpc.discover":
                    result = doc
                else:
                    result = {"method": request["method"], "params": request["params"]}
                conn.sendall(frame({"jsonrpc": "2.0", "result": result, "id": request["id"]}))

        with FakeServer(script) as fake:
            with framedrpc.connect(fake.url, timeout=LIMIT) as p:
                self.assertEqual(dir(p.calc), ["add"])
                self.assertEqual(p.calc.add(1, b=2), {"method": "calc.add", "params": {"a": 1, "b": 2}})
                with self.assertRaises(TypeError):
                    p.calc.add(1)


def _wait_until(predicate, limit=LIMIT):
    """Polls `predicate` until it is true (or `limit` seconds pass); returns its last value."""
    import time

    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


class Streams(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = DemoServer()
        cls.p = framedrpc.connect(cls.server.url("tcp"), timeout=LIMIT)
        cls.q = framedrpc.connect(cls.server.url("tcp"), timeout=LIMIT)

    @classmethod
    def tearDownClass(cls):
        cls.p.close()
        cls.q.close()
        cls.server.__exit__()

    def test_live_watch_receives_posts_from_another_proxy_in_order(self):
        with self.p.live.watch() as posts:
            self.assertIsInstance(posts, framedrpc.Stream)
            # The watcher is registered once the opening is answered.
            self.assertEqual([self.q.live.publish(f"post {i}") for i in range(20)], [1] * 20)
            got = [next(posts) for _ in range(20)]
        self.assertEqual([e["text"] for e in got], [f"post {i}" for i in range(20)])
        self.assertEqual({e["kind"] for e in got}, {"post"})
        self.assertTrue(posts.closed)
        # Closed: the server no longer counts it as a watcher.
        self.assertEqual(_wait_until(lambda: self.q.live.publish("after") == 0), True)

    def test_chat_join_and_send_round_trip(self):
        import inspect

        self.assertEqual(str(inspect.signature(self.p.chat.join)), "(room: str, nick: str) -> Iterator[Any]")
        with self.p.chat.join("sala", "ana") as events:
            self.assertEqual(next(events)["kind"], "joined")
            self.assertIsNone(self.q.chat.send("sala", "ana", "olá ☃"))
            event = next(events)
            self.assertEqual((event["kind"], event["nick"], event["text"]), ("message", "ana", "olá ☃"))
            self.assertIsInstance(event["at"], int)
            self.assertEqual(self.q.chat.who("sala"), ["ana"])
            # Refusals at the opening are the method's own errors.
            with self.assertRaises(errors.ApplicationError) as e:
                self.q.chat.join("sala", "ana")
            self.assertEqual(e.exception.kind, "NickTaken")
            with self.assertRaises(errors.ApplicationError) as e:
                self.q.chat.join("sala", "")
            self.assertEqual(e.exception.kind, "BadName")
            with self.assertRaises(TypeError):
                self.q.chat.join("sala")  # checked locally, as for calls
        self.assertEqual(_wait_until(lambda: self.q.chat.who("sala") == []), True)

    def test_breaking_out_of_the_loop_unsubscribes(self):
        # The for loop holds the only reference: break drops the stream,
        # which sends rpc.unsubscribe, and the Chat service removes the member.
        for event in self.p.chat.join("saida", "bia"):
            self.assertEqual(event["kind"], "joined")
            self.assertEqual(self.q.chat.who("saida"), ["bia"])
            break
        self.assertEqual(_wait_until(lambda: self.q.chat.who("saida") == []), True, self.q.chat.who("saida"))
        # close() and the with block do the same.
        stream = self.p.chat.join("saida", "caio")
        self.assertEqual(self.q.chat.who("saida"), ["caio"])
        stream.close()
        stream.close()  # idempotent
        self.assertEqual(list(stream), [])
        self.assertEqual(_wait_until(lambda: self.q.chat.who("saida") == []), True)
        # close() from another thread stops a thread waiting for an item.
        stream = self.p.chat.join("saida", "davi")
        self.assertEqual(next(stream)["kind"], "joined")
        waited = []
        reader = threading.Thread(target=lambda: waited.append(list(stream)))
        reader.start()
        threading.Event().wait(0.1)
        stream.close()
        reader.join(LIMIT)
        self.assertEqual(waited, [[]])
        self.assertEqual(_wait_until(lambda: self.q.chat.who("saida") == []), True)
        self.assertEqual(self.p.client._conn.session.open_streams, 0)
        self.assertEqual(self.p.add(1, 2), 3)  # the connection is still good

    def test_leaving_the_block_or_closing_frees_the_nick_at_once(self):
        # close() and the with block wait for the answer to rpc.unsubscribe,
        # which the server sends once the room has forgotten the member: the
        # same nick may join again at once, never "that nick is taken".
        for i in range(30):
            with self.p.chat.join("volta", "eva") as events:
                self.assertEqual(next(events)["kind"], "joined")
            self.assertEqual(self.q.chat.who("volta"), [], f"round {i}")
            stream = self.p.chat.join("volta", "eva")
            stream.close()
            self.assertEqual(self.q.chat.who("volta"), [], f"round {i}")
        self.assertEqual(self.p.client._conn.session.open_streams, 0)

    def test_asyncio_aclose_and_async_with_free_the_nick_at_once(self):
        async def main():
            p = await framedrpc.aconnect(self.server.url("tcp"), timeout=LIMIT)
            for i in range(30):
                async with await p.chat.join("avolta", "rui") as events:
                    self.assertEqual((await events.__anext__())["kind"], "joined")
                self.assertEqual(self.q.chat.who("avolta"), [], f"round {i}")
                stream = await p.chat.join("avolta", "rui")
                await stream.aclose()
                self.assertEqual(self.q.chat.who("avolta"), [], f"round {i}")
            await p.close()

        asyncio.run(asyncio.wait_for(main(), 60))

    def test_a_small_window_delivers_a_long_history_with_several_grants(self):
        with self.q.chat.join("longa", "escritor"):
            for i in range(50):
                self.q.chat.send("longa", "escritor", f"mensagem número {i:02d}")
        conn = self.p.client._connection()
        sent = []
        original = conn.send

        def spy(body):
            sent.append(json.loads(body))
            original(body)

        conn.send = spy
        try:
            with self.p.stream("chat.join", ["longa", "leitor"], credit=200, idle_timeout=LIMIT) as events:
                self.assertEqual(events.window, 200)
                history = []
                for event in events:
                    history.append(event)
                    if len([e for e in history if e["kind"] == "message"]) == 50:
                        break
        finally:
            del conn.send
        texts = [e["text"] for e in history if e["kind"] == "message"]
        self.assertEqual(texts, [f"mensagem número {i:02d}" for i in range(50)])
        grants = [m["params"] for m in sent if m.get("method") == "rpc.credit"]
        self.assertGreater(len(grants), 5, grants)
        self.assertTrue(all(g["stream"] == events.id and g["bytes"] > 0 for g in grants), grants)
        self.assertEqual(sent[0]["credit"], 200)
        # Leaving the block unsubscribes with a request, whose answer it waits for.
        self.assertEqual(
            sent[-1],
            {"jsonrpc": "2.0", "method": "rpc.unsubscribe", "params": {"stream": events.id}, "id": sent[-1].get("id")},
        )
        self.assertIsInstance(sent[-1]["id"], int)

    def test_a_small_item_then_a_large_one_does_not_stall(self):
        # Window 150: a ~56-byte item, then a ~136-byte one. After the first
        # the server's allowance (94) is short of the second, and what was
        # read (56) is short of half the window: granting only at half the
        # window would wait forever on both sides. The client also grants
        # what it has read when it runs out of items.
        with self.q.chat.join("variada", "w"):
            self.q.chat.send("variada", "w", "a")
            self.q.chat.send("variada", "w", "b" * 80)
            self.q.chat.send("variada", "w", "c")
        with self.p.stream("chat.join", ["variada", "r"], credit=150, idle_timeout=3) as events:
            texts = []
            for event in events:
                if event["kind"] == "message":
                    texts.append(event["text"])
                if len(texts) == 3:
                    break
        self.assertEqual(texts, ["a", "b" * 80, "c"])

        async def main():
            a = await framedrpc.aconnect(self.server.url("tcp"), timeout=LIMIT)
            texts = []
            async with await a.stream("chat.join", ["variada", "ra"], credit=150, idle_timeout=3) as events:
                async for event in events:
                    if event["kind"] == "message":
                        texts.append(event["text"])
                    if len(texts) == 3:
                        break
            await a.close()
            return texts

        self.assertEqual(asyncio.run(asyncio.wait_for(main(), 30)), ["a", "b" * 80, "c"])

    def test_an_idle_timeout_closes_the_stream(self):
        posts = self.p.stream("live.watch", idle_timeout=0.2)
        with self.assertRaises(errors.DeadlineExceeded) as e:
            next(posts)
        self.assertTrue(e.exception.local)
        self.assertTrue(posts.closed)

    def test_streams_need_a_framed_connection_and_are_not_batched(self):
        with framedrpc.connect(self.server.url("http"), timeout=LIMIT) as h:
            with self.assertRaises(ValueError):
                h.live.watch()
        with self.assertRaises(TypeError):
            with self.p.batch() as b:
                b.live.watch()

    def test_asyncio_streams(self):
        async def main():
            a = await framedrpc.aconnect(self.server.url("tcp"), timeout=LIMIT)
            posts = await a.live.watch()
            self.assertIsInstance(posts, framedrpc.AsyncStream)
            for i in range(5):
                await a.live.publish(f"assíncrono {i}")
            got = []
            async for post in posts:
                got.append(post["text"])
                if len(got) == 5:
                    break
            self.assertEqual(got, [f"assíncrono {i}" for i in range(5)])
            posts.close()
            async with await a.stream("chat.join", ["async", "dani"], credit=64) as events:
                self.assertEqual((await events.__anext__())["kind"], "joined")
                await a.chat.send("async", "dani", "oi")
                self.assertEqual((await events.__anext__())["text"], "oi")
                self.assertEqual(await a.chat.who("async"), ["dani"])
            for _ in range(200):
                if await a.chat.who("async") == []:
                    break
                await asyncio.sleep(0.02)
            self.assertEqual(await a.chat.who("async"), [])
            async for event in await a.chat.join("async", "eva"):
                break  # dropped: unsubscribed
            for _ in range(200):
                if await a.chat.who("async") == []:
                    break
                await asyncio.sleep(0.02)
            self.assertEqual(await a.chat.who("async"), [])
            with self.assertRaises(errors.ApplicationError):
                await a.chat.join("async", "")
            await a.close()

        asyncio.run(asyncio.wait_for(main(), 60))


class StreamFaults(unittest.TestCase):
    """A scripted server for what rpc-demo never does on its own."""

    def fake_stream(self, after_open, credit=None):
        seen = []

        def script(conn):
            request = read_request(conn)
            seen.append(request)
            # The opening response and what follows in one write: the items
            # must not be lost however fast they follow.
            conn.sendall(frame({"jsonrpc": "2.0", "result": {"stream": 7}, "id": request["id"]}) + after_open)
            while True:
                message = read_request(conn)
                if message is None:
                    return
                seen.append(message)

        return FakeServer(script), seen

    @staticmethod
    def item(value):
        body = json.dumps({"jsonrpc": "2.0", "method": "rpc.item", "params": {"stream": 7, "value": value}},
                          separators=(",", ":")).encode()
        return frame(body)

    def test_items_right_after_the_opening_and_an_error_end(self):
        end = frame({"jsonrpc": "2.0", "method": "rpc.end",
                     "params": {"stream": 7, "error": {"code": 1000, "message": "Broken", "data": {"Broken": {"after": 3}}}}})
        fake, seen = self.fake_stream(self.item(0) + self.item("ab") + self.item({"a": 1}) + end)
        with fake:
            p = framedrpc.connect(fake.url, discover_methods=False, timeout=LIMIT)
            got = []
            with self.assertRaises(errors.ApplicationError) as e:
                for value in p.stream("count", [3], credit=12):
                    got.append(value)
            self.assertEqual(got, [0, "ab", {"a": 1}])
            self.assertEqual((e.exception.kind, e.exception.value), ("Broken", {"after": 3}))
            p.close()
            fake.thread.join(LIMIT)
        self.assertEqual(seen[0]["credit"], 12)
        # 1 + 4 + 7 bytes: exactly the window, so no protocol error. The end
        # came before they were read: no credit for an ended stream, and no
        # rpc.unsubscribe either.
        self.assertEqual(seen[1:], [])

    def test_a_server_over_the_credit_breaks_the_stream(self):
        fake, seen = self.fake_stream(self.item("x" * 6) + self.item("y" * 6))
        with fake:
            p = framedrpc.connect(fake.url, discover_methods=False, timeout=LIMIT)
            stream = p.stream("flood", credit=10)
            self.assertEqual(next(stream), "x" * 6)
            with self.assertRaisesRegex(framedrpc.ProtocolError, "more than its credit"):
                next(stream)
            _wait_until(lambda: len(seen) >= 2)
            p.close()
            fake.thread.join(LIMIT)
        self.assertEqual(seen[1], {"jsonrpc": "2.0", "method": "rpc.unsubscribe", "params": {"stream": 7}})

    def test_a_lost_connection_fails_the_stream(self):
        def script(conn):
            request = read_request(conn)
            conn.sendall(frame({"jsonrpc": "2.0", "result": {"stream": 1}, "id": request["id"]}) + self.item(1)[:-3])

        with FakeServer(script) as fake:
            p = framedrpc.connect(fake.url, discover_methods=False, timeout=LIMIT)
            stream = p.stream("ticks")
            with self.assertRaises(ConnectionError):
                next(stream)
            self.assertEqual(list(stream), [])
            p.close()

            async def main():
                fake2 = FakeServer(script)
                try:
                    a = await framedrpc.aconnect(fake2.url, discover_methods=False, timeout=LIMIT)
                    s = await a.stream("ticks")
                    with self.assertRaises(ConnectionError):
                        async for _ in s:
                            pass
                    await a.close()
                finally:
                    fake2.close()

            asyncio.run(asyncio.wait_for(main(), 30))


if __name__ == "__main__":
    unittest.main()
