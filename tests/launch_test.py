"""The launchers: what their dry runs print, their errors, and shellcheck.

Nothing here needs a TPU, a GPU or gcloud: `--dry-run` prints the commands,
and the one real run of tpu_pod.sh goes to a stub `gcloud` that records its
arguments.
"""

import os
import shlex
import shutil
import subprocess
import tarfile

import pytest

from conftest import REPO

TPU_POD = os.path.join(REPO, "launch", "tpu_pod.sh")
MULTI_GPU = os.path.join(REPO, "launch", "multi_gpu.sh")

# Variables the scripts read: cleared so that the caller's shell (or a SLURM
# job running the tests) cannot leak into what they print.
_LAUNCH_VARS = (
    "TPU_NAME", "ZONE", "PROJECT", "CONFIG", "WORKDIR", "SOURCE", "REPO_URL",
    "REPO_REF", "DATA_DIR", "REMOTE_DIR", "GCLOUD", "PYTHON",
    "COORDINATOR_ADDRESS", "COORDINATOR_PORT", "NUM_PROCESSES", "PROCESS_ID",
    "GPUS_PER_NODE")


def run_script(script, args, env=None, path_prepend=None):
  full = {k: v for k, v in os.environ.items()
          if k not in _LAUNCH_VARS and not k.startswith("SLURM_")}
  if path_prepend:
    full["PATH"] = f"{path_prepend}{os.pathsep}{full['PATH']}"
  full.update(env or {})
  return subprocess.run(["bash", script, *args], env=full, cwd=REPO,
                        capture_output=True, text=True, timeout=60)


def command_lines(stdout):
  """The printed commands (comments and blank lines dropped), as argv lists."""
  return [shlex.split(l) for l in stdout.splitlines()
          if l.strip() and not l.startswith("#")]


def flag(argv, name):
  """The value of `--name=value` in argv (exactly one such flag)."""
  values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
  assert len(values) == 1, (name, argv)
  return values[0]


# ----------------------------------------------------------------------------
# tpu_pod.sh
# ----------------------------------------------------------------------------
def test_tpu_pod_dry_run_git():
  r = run_script(TPU_POD, [
      "--dry-run", "--project=my-proj", "--config=configs/ml1m.py",
      "--workdir=/mnt/shared/runs/ml1m",
      "--repo-url=https://github.com/someone/diff4rec_jax.git", "--ref=v1.0",
      "--data-dir=/mnt/shared/data", "--config.train.lr=0.002", "--",
      "--config.model.name=gru4rec"],
                 env={"TPU_NAME": "my-v4-32", "ZONE": "us-central2-b"})
  assert r.returncode == 0, r.stderr
  cmds = command_lines(r.stdout)
  assert len(cmds) == 3        # code, dependencies, run
  for argv in cmds:
    assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh",
                        "my-v4-32"]
    assert flag(argv, "zone") == "us-central2-b"
    assert flag(argv, "project") == "my-proj"
    assert flag(argv, "worker") == "all"
  fetch, install, train = (shlex.split(flag(c, "command")) for c in cmds)
  fetch_line = " ".join(fetch)
  assert ("else git clone https://github.com/someone/diff4rec_jax.git "
          "diff4rec_jax; fi" in fetch_line)
  assert "then git -C diff4rec_jax fetch --tags origin;" in fetch_line
  assert fetch[-6:] == ["&&", "git", "-C", "diff4rec_jax", "checkout", "v1.0"]
  assert install[:3] == ["cd", "diff4rec_jax", "&&"]
  assert install[3:] == ["python3", "-m", "pip", "install", "-q", "-r",
                         "requirements.txt", "jax[tpu]==0.10.2"]
  assert train == [
      "cd", "diff4rec_jax", "&&", "DIFF4REC_DATA_DIR=/mnt/shared/data",
      "python3", "-m", "diff4rec_jax.main", "--distributed",
      "--config=configs/ml1m.py", "--workdir=/mnt/shared/runs/ml1m",
      "--config.train.lr=0.002", "--config.model.name=gru4rec"]


def test_tpu_pod_dry_run_scp_detach_and_quoting():
  r = run_script(TPU_POD, [
      "--dry-run", "--source=scp", "--detach", "--skip-setup",
      "--config.data.name=ml-1m"],
                 env={"TPU_NAME": "t1", "ZONE": "europe-west4-a",
                      "CONFIG": "configs/tiny.py",
                      "WORKDIR": "/mnt/nfs/my run's dir", "PYTHON": "python3.11"})
  assert r.returncode == 0, r.stderr
  (only,) = command_lines(r.stdout)           # --skip-setup: the run alone
  assert "--project" not in " ".join(only)   # gcloud's default project
  train = shlex.split(flag(only, "command"))
  assert train[:4] == ["cd", "diff4rec_jax", "&&", "nohup"]
  assert train[4:10] == ["python3.11", "-m", "diff4rec_jax.main",
                         "--distributed", "--config=configs/tiny.py",
                         "--workdir=/mnt/nfs/my run's dir"]
  assert train[10:] == ["--config.data.name=ml-1m", ">", "train.log", "2>&1",
                        "<", "/dev/null", "&"]

  r = run_script(TPU_POD, ["--dry-run", "--source=scp", "--tpu=t1",
                           "--zone=z", "--config=c.py", "--workdir=/w"],
                 env={"TMPDIR": "/tmp/x"})
  cmds = command_lines(r.stdout)
  assert cmds[0][:3] == ["tar", "-czf", "/tmp/x/diff4rec_jax_src.tar.gz"]
  assert cmds[1] == ["gcloud", "compute", "tpus", "tpu-vm", "scp",
                     "/tmp/x/diff4rec_jax_src.tar.gz", "t1:", "--zone=z",
                     "--worker=all"]
  assert "tar -xzf diff4rec_jax_src.tar.gz -C diff4rec_jax" in flag(
      cmds[2], "command")


def test_tpu_pod_runs_gcloud_with_scp_source(tmp_path):
  """A real (not dry) run against a stub gcloud: the archive is made and
  holds the package, and gcloud is called as the dry run says."""
  log = tmp_path / "gcloud.log"
  stub = tmp_path / "gcloud"
  # One line per call, arguments separated by \x1f (they hold spaces).
  stub.write_text("#!/bin/bash\n(IFS=$'\\x1f'; printf '%s\\n' \"$*\")"
                  f" >> {log}\n")
  stub.chmod(0o755)
  args = ["--source=scp", "--tpu=t1", "--zone=z", "--config=configs/tiny.py",
          "--workdir=/mnt/w"]
  env = {"GCLOUD": str(stub), "TMPDIR": str(tmp_path)}
  r = run_script(TPU_POD, args, env=env)
  assert r.returncode == 0, r.stderr
  calls = [c.split("\x1f") for c in log.read_text().splitlines()]
  assert [c[:4] for c in calls] == [
      ["compute", "tpus", "tpu-vm", "scp"]] + [
          ["compute", "tpus", "tpu-vm", "ssh"]] * 3
  with tarfile.open(tmp_path / "diff4rec_jax_src.tar.gz") as tar:
    names = set(tar.getnames())
  assert {"./diff4rec_jax/train.py", "./requirements.txt",
          "./configs/tiny.py"} <= names
  assert not any(n.startswith("./.git/") for n in names)
  dry = run_script(TPU_POD, ["--dry-run", *args], env=env)
  assert [c[1:] for c in command_lines(dry.stdout)[1:]] == calls


@pytest.mark.parametrize("args, env, message", [
    (["--zone=z", "--config=c", "--workdir=/w"], {}, "TPU_NAME"),
    (["--tpu=t", "--config=c", "--workdir=/w"], {}, "ZONE"),
    (["--tpu=t", "--zone=z", "--workdir=/w"], {}, "CONFIG"),
    (["--tpu=t", "--zone=z", "--config=c"], {}, "WORKDIR"),
    (["--tpu=t", "--zone=z", "--config=c", "--workdir=gs://b/run",
      "--repo-url=u"], {}, "gs:// paths are not supported"),
    (["--tpu=t", "--zone=z", "--config=c", "--workdir=/w", "--source=ftp"],
     {}, "expected git or scp"),
    (["--tpu=t", "--zone=z", "--config=c", "--workdir=/w", "--bogus"], {},
     "unknown argument '--bogus'"),
])
def test_tpu_pod_errors(args, env, message):
  r = run_script(TPU_POD, ["--dry-run", *args], env=env)
  assert r.returncode == 2 and message in r.stderr, r.stderr
  assert not r.stdout


# ----------------------------------------------------------------------------
# multi_gpu.sh
# ----------------------------------------------------------------------------
def parse_multi_gpu(stdout):
  exports, cmds = {}, []
  for argv in command_lines(stdout):
    if argv[0] == "export":
      k, v = argv[1].split("=", 1)
      exports[k] = v
    else:
      cmds.append(argv)
  (cd, main) = cmds
  assert cd == ["cd", REPO]
  return exports, main


def test_multi_gpu_dry_run_slurm(tmp_path):
  """Under SLURM: node id, node count and the first host of the job."""
  scontrol = tmp_path / "scontrol"
  scontrol.write_text(
      '#!/bin/sh\n[ "$1 $2 $3" = "show hostnames gpu-[07-09]" ] || exit 1\n'
      'printf "gpu-07\\ngpu-08\\ngpu-09\\n"\n')
  scontrol.chmod(0o755)
  env = {"SLURM_JOB_ID": "123456", "SLURM_JOB_NODELIST": "gpu-[07-09]",
         "SLURM_NNODES": "3", "SLURM_NTASKS": "3", "SLURM_NODEID": "2",
         "GPUS_PER_NODE": "8"}
  r = run_script(MULTI_GPU, ["--dry-run", "--config=configs/ml1m.py",
                             "--workdir=/lustre/runs/ml1m",
                             "--config.train.batch_size=1024"],
                 env=env, path_prepend=str(tmp_path))
  assert r.returncode == 0, r.stderr
  exports, main = parse_multi_gpu(r.stdout)
  assert exports == {
      "JAX_COORDINATOR_ADDRESS": f"gpu-07:{123456 % 4096 + 61440}",
      "DIFF4REC_NUM_PROCESSES": "3", "DIFF4REC_PROCESS_ID": "2",
      "JAX_LOCAL_DEVICE_IDS": "0,1,2,3,4,5,6,7"}
  assert main == ["python3", "-m", "diff4rec_jax.main", "--distributed",
                  "--config=configs/ml1m.py", "--workdir=/lustre/runs/ml1m",
                  "--config.train.batch_size=1024"]
  assert "# process 2 of 3, coordinator gpu-07:" in r.stdout


def test_multi_gpu_dry_run_explicit_env_wins_over_slurm():
  env = {"COORDINATOR_ADDRESS": "10.0.0.5", "COORDINATOR_PORT": "4321",
         "NUM_PROCESSES": "2", "PROCESS_ID": "1", "CONFIG": "configs/tiny.py",
         "WORKDIR": "/nfs/a b", "PYTHON": "/opt/venv/bin/python",
         "SLURM_NNODES": "5", "SLURM_NODEID": "4"}
  r = run_script(MULTI_GPU, ["--dry-run", "--", "--config.seed=3"], env=env)
  assert r.returncode == 0, r.stderr
  exports, main = parse_multi_gpu(r.stdout)
  assert exports["JAX_COORDINATOR_ADDRESS"] == "10.0.0.5:4321"
  assert exports["DIFF4REC_NUM_PROCESSES"] == "2"
  assert exports["DIFF4REC_PROCESS_ID"] == "1"
  assert main == ["/opt/venv/bin/python", "-m", "diff4rec_jax.main",
                  "--distributed", "--config=configs/tiny.py",
                  "--workdir=/nfs/a b", "--config.seed=3"]


def test_multi_gpu_dry_run_single_process():
  r = run_script(MULTI_GPU, ["--dry-run", "--config=configs/tiny.py",
                             "--workdir=runs/t"],
                 env={"COORDINATOR_ADDRESS": "h:99"})
  assert r.returncode == 0, r.stderr
  exports, main = parse_multi_gpu(r.stdout)
  assert exports["JAX_COORDINATOR_ADDRESS"] == "h:99"   # port kept as given
  assert exports["DIFF4REC_NUM_PROCESSES"] == "1"
  assert "--distributed" not in main       # one process: no jax.distributed


@pytest.mark.parametrize("env, message", [
    ({"NUM_PROCESSES": "2"}, "no coordinator"),
    ({"NUM_PROCESSES": "2", "PROCESS_ID": "2", "COORDINATOR_ADDRESS": "h"},
     "PROCESS_ID=2: expected an integer in [0, 2)"),
    ({"NUM_PROCESSES": "zero"}, "NUM_PROCESSES=zero"),
    ({"SLURM_NNODES": "2", "SLURM_NTASKS": "16", "SLURM_NODEID": "0"},
     "one task per node"),
    ({"GPUS_PER_NODE": "0"}, "GPUS_PER_NODE=0"),
    ({"SLURM_JOB_NODELIST": "n[1-2]", "SLURM_NNODES": "2",
      "PATH": "/nonexistent:/usr/bin:/bin"}, "scontrol is not on PATH"),
])
def test_multi_gpu_errors(env, message):
  r = run_script(MULTI_GPU, ["--dry-run", "--config=c", "--workdir=/w"],
                 env=env)
  assert r.returncode == 2 and message in r.stderr, r.stderr


def test_multi_gpu_requires_config_and_workdir():
  r = run_script(MULTI_GPU, ["--dry-run", "--workdir=/w"])
  assert r.returncode == 2 and "no config" in r.stderr
  r = run_script(MULTI_GPU, ["--dry-run", "--config=c"])
  assert r.returncode == 2 and "no workdir" in r.stderr


@pytest.mark.parametrize("script", [TPU_POD, MULTI_GPU])
def test_help_prints_usage(script):
  r = run_script(script, ["--help"])
  assert r.returncode == 0 and "Usage: launch/" in r.stdout
  assert "--dry-run" in r.stdout


@pytest.mark.parametrize("script", [TPU_POD, MULTI_GPU])
def test_shellcheck_clean(script):
  if shutil.which("shellcheck") is None:
    pytest.skip("shellcheck is not on PATH (apt-get install shellcheck)")
  r = subprocess.run(["shellcheck", "--severity=style", script],
                     capture_output=True, text=True, timeout=60)
  assert r.returncode == 0, r.stdout + r.stderr
