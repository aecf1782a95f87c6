"""A pre-imported ``python train.py`` for testing the bash protocol scripts quickly.

Importing torch, torchvision and clip takes 5-15 s per process on a small machine; the
scripts start one train.py per job. The server imports everything once and forks a child
per request; the child gets the client's stdin/stdout/stderr (passed over a Unix socket),
working directory, environment and argv, and runs train.py as ``python train.py`` would
(runpy, ``__main__``; ``python -m MODULE ...`` likewise). The client is a stdlib-only
stand-in for the interpreter, used as the scripts' ``PYTHON``:

    server = ForkServer(tmp_dir); PYTHON=server.client bash scripts/coop/base2new.sh
"""
import json
import os
import runpy
import socket
import subprocess
import sys
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CLIENT = """#!{python} -S
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect({path!r})
req = {{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}
socket.send_fds(s, [json.dumps(req).encode()], [0, 1, 2])
sys.exit(int(s.recv(16) or b"1"))
"""


def _child(req, fds):
    code = 1
    try:
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        sys.argv = list(req["argv"])
        import torch
        # One thread per job: for the tiny test models on a small shared machine, two
        # threads are several times slower than one.
        torch.set_num_threads(int(os.environ.get("FORKSERVER_THREADS", "1")))
        try:
            if sys.argv[0] == "-m":  # the scripts read their settings with python -m e2mim_tools.protocols
                sys.argv = sys.argv[1:]
                runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(sys.argv[0], run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reap():
    """Collect the handlers that have finished (no zombies)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve(path):
    import e2mim_datasets  # noqa: F401  (the slow imports, once)
    import e2mim_trainers  # noqa: F401
    from e2mim_engine import cli  # noqa: F401
    import sklearn.metrics  # noqa: F401  (imported lazily by the evaluator and the trainer)
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    srv.bind(path)
    srv.listen(4)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        req = json.loads(msg)
        if req.get("stop"):
            conn.close()
            break
        # A handler per request waits for its job and reports the exit code, so requests are
        # served at once: a job may itself start jobs (a sweep run through the scripts).
        if os.fork() == 0:
            srv.close()
            pid = os.fork()
            if pid == 0:
                conn.close()
                _child(req, fds)
            for fd in fds:
                os.close(fd)
            _, status = os.waitpid(pid, 0)
            conn.send(str(os.waitstatus_to_exitcode(status)).encode())
            conn.close()
            os._exit(0)
        for fd in fds:
            os.close(fd)
        conn.close()
        _reap()


class ForkServer:
    def __init__(self, tmp_dir):
        self.path = os.path.join(str(tmp_dir), "train.sock")
        self.client = os.path.join(str(tmp_dir), "python")
        with open(self.client, "w") as f:
            f.write(CLIENT.format(python=sys.executable, path=self.path))
        os.chmod(self.client, 0o755)
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), self.path], cwd=ROOT,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise RuntimeError(f"fork server did not start: {line!r}")

    def close(self):
        if self.proc.poll() is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.connect(self.path)
            socket.send_fds(s, [json.dumps({"stop": True}).encode()], [0, 1, 2])
            s.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.stdout.close()


if __name__ == "__main__":
    serve(sys.argv[1])
