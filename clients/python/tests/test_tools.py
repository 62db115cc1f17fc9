"""The stub generator (with mypy) and the examples, as programs."""

import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

import framedrpc
from framedrpc.stubgen import python_name

from .support import LIMIT, DemoServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, stdin="", cwd=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        args, input=stdin, capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )


class Stubgen(unittest.TestCase):
    def test_the_generated_module_works_and_mypy_accepts_it(self):
        try:
            import mypy  # noqa: F401
        except ImportError:
            self.fail("mypy is not installed: `.ci/run` installs it (python3 -m pip install mypy)")
        with DemoServer() as server, tempfile.TemporaryDirectory() as tmp:
            url = server.url("tcp")
            default = run([sys.executable, "-m", "framedrpc", "stubgen", url])
            self.assertEqual(default.returncode, 0, default.stderr)
            # The default name comes from the server's title, whatever services it lists.
            with framedrpc.connect(url, timeout=LIMIT) as p:
                title = p.call("rpc.discover")["info"]["title"]
            self.assertIn(f"class {python_name(title, cls=True)}Client:", default.stdout)
            gen = run([sys.executable, "-m", "framedrpc", "stubgen", url, "--class-name", "CalcClient"])
            self.assertEqual(gen.returncode, 0, gen.stderr)
            source = gen.stdout
            for expected in ("class CalcClient:", "def add(self, a: float, b: float) -> float:",
                             "def hello(self, name: str) -> str:", "def sleep(self, ms: int) -> int:",
                             'CalcError = Union[Literal["DivisionByZero"], ', "(TypedDict):", "Returns `a + b`.",
                             "def chat_join(self, room: str, nick: str) -> framedrpc.Stream[Event]:",
                             "def live_watch(self) -> framedrpc.Stream[LiveEvent]:",
                             "    soma = add  # the server's alias `soma`", "    pot = pow  # the server's alias `pot`"):
                self.assertIn(expected, source)
            with open(os.path.join(tmp, "calc_client.py"), "w") as f:
                f.write(source)
            with open(os.path.join(tmp, "use_calc.py"), "w") as f:
                f.write(textwrap.dedent('''\
                    import sys
                    import framedrpc
                    from typing import Iterator
                    from calc_client import CalcError, CalcClient, Event

                    with CalcClient(sys.argv[1]) as calc:
                        total: float = calc.add(2, 3)
                        assert calc.soma(2, 3) == total and calc.mult(2, 3) == 6.0
                        greeting: str = calc.hello("Zé")
                        try:
                            calc.div(1, 0)
                        except framedrpc.ApplicationError as e:
                            error: CalcError = e.data
                            print(total, greeting, error)
                        with calc.chat_join("stubs", "ana") as events:
                            calc.chat_send("stubs", "ana", "oi")
                            kinds = []
                            for event in events:
                                kinds.append(event["kind"])
                                if event["kind"] == "message":
                                    print(event["nick"], event["text"])
                                    break
                            print(kinds)
                        also: Iterator[Event] = calc.chat_join("stubs", "bia")
                        also_stream: framedrpc.Stream[Event] = calc.chat_join("stubs", "caio")
                        also_stream.close()
                    '''))
            with open(os.path.join(tmp, "misuse.py"), "w") as f:
                f.write("from calc_client import CalcClient\n"
                        "x: str = CalcClient('tcp://h:1').add('2', 3)\n"
                        "for e in CalcClient('tcp://h:1').live_watch():\n"
                        "    y: int = e['text']\n")
            checked = run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "calc_client.py", "use_calc.py"], cwd=tmp)
            self.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)
            # mypy is really checking: a wrong use is refused.
            wrong = run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "misuse.py"], cwd=tmp)
            self.assertNotEqual(wrong.returncode, 0, wrong.stdout)
            self.assertIn("incompatible type", wrong.stdout)
            self.assertIn('TypedDict "LiveEvent1" has no key "text"', wrong.stdout)
            ran = run([sys.executable, "use_calc.py", url], cwd=tmp)
            self.assertEqual(ran.returncode, 0, ran.stderr)
            self.assertEqual(ran.stdout.strip().splitlines(), ["5.0 Olá, Zé! DivisionByZero", "ana oi", "['joined', 'message']"])


class Examples(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = DemoServer()

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__()

    def example(self, name, stdin, scheme="tcp"):
        out = run([sys.executable, os.path.join(ROOT, "examples", name), self.server.url(scheme)], stdin)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    def test_hello(self):
        self.assertEqual(self.example("hello_client.py", "João\n"), "Digite seu nome: Olá, João!\n")

    def test_hello_asks_again_on_an_empty_name_and_ends_cleanly_at_end_of_input(self):
        out = self.example("hello_client.py", "\n  \nJoão\n")
        self.assertEqual(out.count("type a name"), 2, out)
        self.assertTrue(out.endswith("Olá, João!\n"), out)
        out = run([sys.executable, os.path.join(ROOT, "examples", "hello_client.py"), self.server.url("tcp")], "")
        self.assertEqual((out.returncode, out.stderr), (1, "hello_client: no name was typed\n"))

    def test_without_a_server_the_examples_print_one_line_naming_the_address(self):
        import socket

        with socket.socket() as s:  # a port nobody listens on: bound, not listening
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            for name in ("hello_client.py", "calculator_client.py", "echo_client.py"):
                with self.subTest(name=name):
                    out = run([sys.executable, os.path.join(ROOT, "examples", name), f"tcp://127.0.0.1:{port}"], "x\n")
                    self.assertEqual(out.returncode, 1, out.stderr)
                    self.assertEqual(out.stderr.count("\n"), 1, out.stderr)
                    self.assertIn(f"could not connect to 127.0.0.1:{port}", out.stderr)
                    self.assertNotIn("Traceback", out.stderr)

    def test_echo_stops_at_fim(self):
        out = self.example("echo_client.py", "um\ndois três\nfim\nnão enviado\n")
        self.assertIn("Server recebeu: um\n", out)
        self.assertIn("Server recebeu: dois três\n", out)
        self.assertNotIn("não enviado", out)
        self.assertTrue(out.endswith("Fim...\n"))

    def test_calculator(self):
        out = self.example("calculator_client.py", "15\n10\n")
        self.assertIn("Somar: 25.0", out)
        self.assertIn("Potência: 576650390625.0", out)
        out = self.example("calculator_client.py", "1\n0\n")
        self.assertIn("Dividir: erro (DivisionByZero: division by zero)", out)
        # As `rpc-demo calc`: the decimal comma, and bad numbers asked again.
        out = self.example("calculator_client.py", "dois\n2,5\ninf\n2\n")
        self.assertEqual(out.count("is not a number"), 2, out)
        self.assertIn("Somar: 4.5", out)
        self.assertIn("Multiplicar: 5.0", out)

    def test_rest_exercise(self):
        out = self.example("rest_exercise_client.py", "mult\n8\n5\n", scheme="http")
        self.assertIn("operação: mult", out)
        self.assertIn("{'A multiplicação': 40.0}", out)


if __name__ == "__main__":
    unittest.main()
