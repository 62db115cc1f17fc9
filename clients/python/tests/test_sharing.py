"""One framed connection shared by threads, read by the callers themselves
(leader/follower, see `FramedConnection`): a lone caller needs no reader
thread; the reading passes to a waiting thread when the reader times out or
gets its answer; a dropped connection or a killed server leaves no call
hanging.

The scripted server (`FakeServer`) answers only when the test says so, so
that who reads at each moment is known; every wait is bounded by LIMIT."""

import queue
import socket
import threading
import unittest

import framedrpc
from framedrpc import errors

from .support import LIMIT, DemoServer, FakeServer, read_request, frame


def until(predicate, what: str) -> None:
    """Waits (at most LIMIT seconds) until `predicate()` is true."""
    ticks = threading.Event()
    for _ in range(int(LIMIT / 0.005)):
        if predicate():
            return
        ticks.wait(0.005)
    raise AssertionError(f"not within {LIMIT} s: {what}")


def reader_threads():
    return [t for t in threading.enumerate() if t.name == "framedrpc-reader"]


class Outcome:
    """A call run in a thread of its own: `.value` or `.error` once joined."""

    def __init__(self, call) -> None:
        self.value = self.error = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call) -> None:
        try:
            self.value = call()
        except BaseException as e:
            self.error = e

    def join(self) -> "Outcome":
        self.thread.join(LIMIT)
        if self.thread.is_alive():
            raise AssertionError(f"a call still hangs after {LIMIT} s")
        return self


class Scripted:
    """A FakeServer that reads requests as they come (`requests`, a queue
    of (id, method)) and sends what the test puts in `to_send` (bytes; None
    closes the connection)."""

    def __init__(self) -> None:
        self.requests: "queue.Queue" = queue.Queue()
        self.to_send: "queue.Queue" = queue.Queue()
        self.fake = FakeServer(self._script)

    def _script(self, conn) -> None:
        def read_all() -> None:
            try:
                while True:
                    request = read_request(conn)
                    if request is None:
                        return
                    self.requests.put((request.get("id"), request.get("method")))
            except OSError:  # closed by the test (socket.timeout is one too)
                return

        threading.Thread(target=read_all, daemon=True).start()
        while True:
            data = self.to_send.get(timeout=LIMIT)
            if data is None:
                # Shut down first: a close alone leaves the socket open while
                # read_all waits in recv() on it.
                conn.shutdown(socket.SHUT_RDWR)
                return
            conn.sendall(data)

    def next_request(self):
        return self.requests.get(timeout=LIMIT)

    def answer(self, request_id, result) -> None:
        self.to_send.put(frame({"jsonrpc": "2.0", "result": result, "id": request_id}))


class SharedReading(unittest.TestCase):
    def setUp(self) -> None:
        self.scripted = Scripted()
        self.p = framedrpc.connect(self.scripted.fake.url, discover_methods=False, timeout=None)
        # Nothing is dialled until the first call: a notification dials.
        self.p.notify("hello")
        self.conn = self.p.client._conn
        self.assertEqual(self.scripted.next_request(), (None, "hello"))

    def tearDown(self) -> None:
        self.p.close()
        self.scripted.to_send.put(None)
        self.scripted.fake.close()

    def test_a_lone_caller_reads_its_own_answers_without_a_reader_thread(self):
        for n in range(3):
            call = Outcome(lambda: self.p.work(n))
            request_id, method = self.scripted.next_request()
            self.assertEqual(method, "work")
            until(lambda: self.conn._reading, "the caller reads")
            self.assertEqual(self.conn._parked, {})
            self.scripted.answer(request_id, n)
            self.assertEqual(call.join().value, n)
            self.assertFalse(self.conn._reading, "the reading role was not given back")
        self.assertEqual(reader_threads(), [])

    def test_a_reader_that_times_out_hands_the_reading_to_a_waiting_thread(self):
        first = Outcome(lambda: self.p.with_timeout(1.0).slow())
        first_id, _ = self.scripted.next_request()
        until(lambda: self.conn._reading, "the first caller reads")
        second = Outcome(lambda: self.p.later())
        second_id, _ = self.scripted.next_request()
        until(lambda: len(self.conn._parked) == 1, "the second caller waits behind the first")
        # The first call times out (nobody answers it): the second caller,
        # parked, must take over the reading, or it would wait forever.
        self.assertIsInstance(first.join().error, errors.DeadlineExceeded)
        self.assertEqual(self.scripted.next_request(), (None, "rpc.cancel"))
        self.scripted.answer(second_id, "late")
        self.assertEqual(second.join().value, "late")
        self.assertEqual(reader_threads(), [])
        self.assertFalse(self.conn._reading)
        self.assertEqual(self.conn.session.in_flight, 0)
        # The server's late answer to the abandoned call is ignored.
        self.scripted.answer(first_id, "too late")
        third = Outcome(lambda: self.p.third())
        third_id, _ = self.scripted.next_request()
        self.scripted.answer(third_id, 3)
        self.assertEqual(third.join().value, 3)

    def test_the_reader_resolves_the_others_answers_and_hands_on_when_it_has_its_own(self):
        calls = {}
        for name in ("a", "b", "c"):
            calls[name] = Outcome(lambda name=name: self.p.call(name))
            request_id, method = self.scripted.next_request()
            calls[name].id = request_id
            until(lambda: self.conn._reading, "someone reads")
        until(lambda: len(self.conn._parked) == 2, "two callers wait behind the reader")
        # Answers in reverse order: c (parked) is resolved by the reader;
        # then b; then a. Whoever reads, all three get their own answer.
        for name in ("c", "b", "a"):
            self.scripted.answer(calls[name].id, name.upper())
            self.assertEqual(calls[name].join().value, name.upper())
        self.assertFalse(self.conn._reading)
        self.assertEqual(self.conn._parked, {})
        self.assertEqual(reader_threads(), [])

    def test_a_dropped_connection_fails_the_promoted_reader_and_the_waiting_callers(self):
        first = Outcome(lambda: self.p.first())
        first_id, _ = self.scripted.next_request()
        until(lambda: self.conn._reading, "the first caller reads")
        others = []
        for _ in range(2):
            others.append(Outcome(lambda: self.p.never()))
            self.scripted.next_request()
        until(lambda: len(self.conn._parked) == 2, "two callers wait behind the first")
        self.scripted.answer(first_id, 1)
        self.assertEqual(first.join().value, 1)
        # One of the two took over the reading; the other still waits.
        until(lambda: len(self.conn._parked) == 1, "a waiting caller took over the reading")
        self.assertTrue(self.conn._reading)
        self.scripted.to_send.put(None)  # the server closes: no timeouts here, only the drop ends them
        for call in others:
            error = call.join().error
            self.assertIsInstance(error, ConnectionResetError)
            self.assertIn("closed the connection", str(error))
        self.assertFalse(self.conn.usable)
        self.assertFalse(self.conn._reading)
        self.assertEqual(self.conn._parked, {})


class SharedWriting(unittest.TestCase):
    def test_frames_queued_behind_a_blocked_write_are_bounded_and_all_arrive_whole(self):
        go = threading.Event()
        received = []

        def script(conn) -> None:
            go.wait(LIMIT)  # read nothing at first: the client's writes block
            while True:
                request = read_request(conn)
                if request is None:
                    return
                received.append(request)

        with FakeServer(script) as fake:
            p = framedrpc.connect(fake.url, discover_methods=False, timeout=LIMIT)
            try:
                blob = "x" * 200_000
                senders = [
                    threading.Thread(
                        target=lambda t=t: [p.notify("blob", [t, i, blob]) for i in range(20)], daemon=True
                    )
                    for t in range(4)
                ]
                for t in senders:
                    t.start()
                until(lambda: p.client._conn is not None, "the connection is dialled")
                conn = p.client._conn
                limit = framedrpc.transport._QUEUE_LIMIT
                # One thread writes (blocked: the server reads nothing); the
                # others queue frames for it until the queue is full, then wait.
                until(lambda: conn._queued > limit - 200_100, "the queue fills up")
                for _ in range(50):
                    self.assertLessEqual(conn._queued, limit)
                go.set()
                for t in senders:
                    t.join(LIMIT)
                self.assertFalse(any(t.is_alive() for t in senders), "a sender still waits")
            finally:
                p.close()
        self.assertEqual(len(received), 80)
        for t in range(4):
            mine = [r["params"][1] for r in received if r["params"][0] == t]
            self.assertEqual(mine, list(range(20)), f"thread {t}'s frames out of order or lost")
        self.assertTrue(all(r["method"] == "blob" and r["params"][2] == blob for r in received))


class ManyThreads(unittest.TestCase):
    def test_eight_threads_with_timeouts_and_a_server_killed_midway_leave_no_call_hanging(self):
        server = DemoServer()
        try:
            p = framedrpc.connect(server.url("tcp"), timeout=LIMIT)
            conn = p.client._conn
            done = [0]
            wrong = []
            timeouts = [0]
            ends = {}
            counting = threading.Lock()

            def work(t: int) -> None:
                i = 0
                try:
                    while True:
                        if i % 5 == 0:
                            try:
                                got = p.with_timeout(0.02).sleep(40)
                                if got != 40:
                                    wrong.append((t, i, got))
                            except errors.DeadlineExceeded:
                                with counting:
                                    timeouts[0] += 1
                        else:
                            got = p.add(t, i)
                            if got != t + i:
                                wrong.append((t, i, got))
                        with counting:
                            done[0] += 1
                        i += 1
                except BaseException as e:
                    ends[t] = e

            threads = [threading.Thread(target=work, args=(t * 1000,), daemon=True) for t in range(8)]
            for t in threads:
                t.start()
            until(lambda: done[0] >= 2000 and timeouts[0] >= 20, "2,000 calls, 20 of them timed out")
            server.stop()  # killed, while threads wait and one of them reads
            for t in threads:
                t.join(LIMIT)
            self.assertEqual([t for t in threads if t.is_alive()], [], "a call still hangs")
            self.assertEqual(wrong, [])
            self.assertEqual(len(ends), 8)
            for t, error in ends.items():
                self.assertIsInstance(error, ConnectionError, f"thread {t} ended with {error!r}")
            self.assertFalse(conn.usable)
            self.assertFalse(conn._reading)
            self.assertEqual(conn._parked, {})
            self.assertEqual(conn.session.in_flight, 0)
            p.close()
        finally:
            server.__exit__()


if __name__ == "__main__":
    unittest.main()
