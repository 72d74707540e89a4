#!/usr/bin/env python3
"""Tests for check.py: each broken copy of deploy/ must fail with the expected message.

    python3 deploy/test_check.py
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def run_check(deploy_dir: str) -> tuple[int, set[str]]:
    env = {**os.environ, "FOODSEG_DEPLOY_DIR": deploy_dir}
    out = subprocess.run([sys.executable, os.path.join(HERE, "check.py")], env=env,
                         capture_output=True, text=True, check=False)
    fails = {line for line in out.stdout.splitlines() if line.startswith("FAIL ")}
    if out.returncode not in (0, 1):
        raise AssertionError(f"check.py crashed:\n{out.stdout}\n{out.stderr}")
    return out.returncode, fails


class CheckCatchesBreakage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="foodseg-deploy-")
        cls.clean = os.path.join(cls.tmp, "clean")
        shutil.copytree(HERE, cls.clean)
        cls.baseline = run_check(cls.clean)[1]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def broken(self, rel_path: str, old: str, new: str) -> set[str]:
        copy = os.path.join(self.tmp, self.id().rsplit(".", 1)[-1])
        shutil.copytree(self.clean, copy)
        path = os.path.join(copy, rel_path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        self.assertIn(old, text, f"{rel_path} no longer holds {old!r}")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(old, new, 1))
        code, fails = run_check(copy)
        self.assertEqual(code, 1)
        return fails - self.baseline

    def assert_new_failure(self, fails: set[str], needle: str):
        self.assertTrue(any(needle in f for f in fails), f"no new failure mentioning {needle!r}: {fails}")

    def test_the_real_files_only_fail_on_missing_outside_files(self):
        # Only the collector config (written under otel/, outside deploy/) may be absent.
        for f in self.baseline:
            self.assertIn("collector.yaml", f)

    def test_container_port_disagreeing_with_the_service(self):
        fails = self.broken("k8s/worker.yaml", "containerPort: 8001", "containerPort: 8009")
        self.assert_new_failure(fails, "containerPort http is 8009, the service listens on 8001")

    def test_misspelled_environment_variable(self):
        fails = self.broken("compose.yaml", "FOODSEG_API_ADDR: 0.0.0.0:8000", "FOODSEG_API_ADRR: 0.0.0.0:8000")
        self.assert_new_failure(fails, "FOODSEG_API_ADRR is read by neither foodseg-api")

    def test_entrypoint_that_is_no_binary(self):
        fails = self.broken("docker/Dockerfile.service", 'ENTRYPOINT ["/usr/local/bin/foodseg-api"]',
                            'ENTRYPOINT ["/usr/local/bin/foodseg-apid"]')
        self.assert_new_failure(fails, "ENTRYPOINT foodseg-apid is no binary of the workspace")

    def test_keda_consumer_the_code_never_creates(self):
        fails = self.broken("k8s/keda-scaledobject.yaml", "consumer: worker-yolov5s-seg-coco", "consumer: worker-other")
        self.assert_new_failure(fails, "consumer worker-other")

    def test_probe_on_a_path_the_service_does_not_serve(self):
        fails = self.broken("k8s/api.yaml", "path: /health/ready", "path: /healthz")
        self.assert_new_failure(fails, "path /healthz is not a route of foodseg-api")

    def test_yaml_that_does_not_parse(self):
        fails = self.broken("k8s/namespace.yaml", "name: foodseg", "name: [foodseg")
        self.assert_new_failure(fails, "does not parse")

    def test_gpu_worker_without_a_gpu(self):
        fails = self.broken("k8s/worker.yaml", "nvidia.com/gpu: 1", "example.com/other: 1")
        self.assert_new_failure(fails, "FOODSEG_EXECUTION_PROVIDER=cuda but nvidia.com/gpu limit is None")

    def test_gpu_worker_that_runs_by_default(self):
        fails = self.broken("compose.yaml", 'profiles: ["gpu"]', 'profiles: []')
        self.assert_new_failure(fails, "a GPU worker must sit under the opt-in profile gpu")

    def test_no_cpu_worker_by_default(self):
        fails = self.broken("compose.yaml", "    # The default worker: runs anywhere (no profile needed).\n",
                            '    profiles: ["cpu"]\n')
        self.assert_new_failure(fails, "no CPU worker runs by default")

    def test_container_keeping_its_capabilities(self):
        fails = self.broken("k8s/api.yaml", "drop: [ALL]", "drop: [NET_RAW]")
        self.assert_new_failure(fails, "capabilities.drop lacks ALL")

    def test_pod_without_seccomp(self):
        fails = self.broken("k8s/scheduler.yaml", "              type: RuntimeDefault", "              type: Unconfined")
        self.assert_new_failure(fails, "not RuntimeDefault")

    def test_replicas_on_a_keda_scaled_deployment(self):
        fails = self.broken("k8s/worker.yaml", "spec:\n  # No `replicas`", "spec:\n  replicas: 2\n  # No `replicas`")
        self.assert_new_failure(fails, "sets replicas but an autoscaler owns its scale")

    def test_latest_image_tag(self):
        fails = self.broken("k8s/api.yaml", "image: foodseg-api\n", "image: foodseg-api:latest\n")
        self.assert_new_failure(fails, "uses the moving tag latest")

    def test_unpinned_image(self):
        fails = self.broken("k8s/kustomization.yaml", 'newTag: "0.1.0"', "newTag: latest")
        self.assert_new_failure(fails, "pins none")


if __name__ == "__main__":
    unittest.main()
