"""Fixtures for the console's browser journeys: a real seeded node serving its console, and a
headless Chromium from Debian's packages driven by Selenium (nothing downloads a browser)."""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "console horse battery staple"
SHOTS = Path(os.environ.get("EDUHUB_SCREENSHOTS", ROOT / ".build-console" / "screenshots"))

# Who the journeys sign in as (username, role, org, person).
ACCOUNTS = [
    ("teacher.wang", "teacher", "5117030001", "T5117030001-001"),
    ("dachuan.it", "county-admin", "511703", None),
    ("steward.li", "data-steward", "511700", None),
    ("officer.chen", "security-officer", "511700", None),
    ("bureau.zhou", "data-consumer", "511703", None),
]


def binary() -> Path:
    path = Path(os.environ.get("EDUHUB_BIN", ROOT / ".build" / "debug" / "eduhub"))
    if not path.exists():
        pytest.exit(f"eduhub binary not found at {path}: run `swift build` first", returncode=2)
    return path


def eduhub(*args, env=None):
    result = subprocess.run([str(binary()), *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, process, log):
    deadline = time.time() + 30
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"eduhub serve exited early: {Path(log).read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the console did not start listening")


class ConsoleNode:
    """A seeded central node serving RPC and its console."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="eduhub-console-")
        self.data = self.dir + "/central"
        eduhub("init", "--data", self.data, "--node-id", "central")
        eduhub("seed", "--data", self.data, "--scale", "small")
        env = {"EDUHUB_TEST_PASSWORD": PASSWORD}
        for username, role, org, person in ACCOUNTS:
            extra = ["--person", person] if person else []
            eduhub("user", "--data", self.data, "--username", username, "--password-env", "EDUHUB_TEST_PASSWORD",
                   "--role", role, "--org", org, *extra, env=env)
        # A school node of the county, created but never enrolled: the node page shows it offline.
        eduhub("node", "create", "--data", self.data, "--node-id", "school-5117030002", "--org", "5117030002")
        self.rpc_port = free_port()
        self.port = free_port()
        self.log = self.dir + "/serve.log"
        self.process = subprocess.Popen(
            [str(binary()), "serve", "--data", self.data, "--listen", f"127.0.0.1:{self.rpc_port}",
             "--console-listen", f"127.0.0.1:{self.port}", "--log-level", "info"],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        wait_port(self.port, self.process, self.log)
        # Actions a journey performed through the console (set by the journeys), checked in the
        # audit log when the node stops.
        self.expect_audited = set()

    def audit(self):
        """The node's audit log for the last two days and the next (China time), as exported."""
        import datetime
        import json
        today = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).date()
        archive = self.dir + "/audit.jsonl"
        eduhub("audit", "export", "--data", self.data, "--since", str(today - datetime.timedelta(days=1)),
               "--until", str(today + datetime.timedelta(days=2)), "--to", archive)
        return [json.loads(line) for line in Path(archive).read_text().splitlines() if line.strip()]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        return self.process.returncode


@pytest.fixture(scope="session")
def node():
    n = ConsoleNode()
    yield n
    assert n.stop() == 0, Path(n.log).read_text()[-3000:]
    verify = subprocess.run([str(binary()), "audit", "verify", "--data", n.data], capture_output=True, text=True)
    assert verify.returncode == 0 and "intact" in verify.stdout, verify.stdout + verify.stderr
    # One policy: the decisions made in the browser are in the node's audit log, by the services,
    # with the console's peer.
    entries = n.audit()
    by_console = {e.get("action") for e in entries if str(e.get("peer", "")).startswith("console:")}
    missing = n.expect_audited - by_console
    assert not missing, f"not audited with the console's peer: {sorted(missing)} (audited: {sorted(by_console)})"
    shutil.rmtree(n.dir, ignore_errors=True)


def _chromium_paths():
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (Path(browser).exists() and Path(driver).exists()):
        pytest.exit("chromium and chromium-driver (Debian packages) are needed: run Tools/setup", returncode=2)
    return browser, driver


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary_path, driver_path = _chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary_path
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                 "--lang=zh-CN", "--disable-gpu", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


class Pages:
    """What a journey does in the browser."""

    def __init__(self, driver, node):
        self.driver = driver
        self.node = node

    def go(self, path):
        self.driver.get(self.node.url + path)
        self.loaded()

    def click(self, element, alert=False):
        """Clicks something that loads a page, and waits for the new page (accepting a confirm
        dialog first when `alert`)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        from selenium.webdriver.support.ui import WebDriverWait
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
        old = self.driver.find_element(By.TAG_NAME, "html")
        try:
            element.click()
        except StaleElementReferenceException:
            pass  # the page was already on its way out when the click's reply came
        except WebDriverException as error:
            # chromedriver's way of saying the same while the next page replaces the document.
            if "does not belong to the document" not in str(error):
                raise
        if alert:
            WebDriverWait(self.driver, 10).until(EC.alert_is_present()).accept()
        WebDriverWait(self.driver, 15).until(lambda _: self.replaced(old))
        self.loaded()

    @staticmethod
    def replaced(element):
        """Whether the page holding `element` is gone (EC.staleness_of, also taking chromedriver's
        "does not belong to the document", which it answers while the next page replaces it)."""
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
        try:
            element.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            if "does not belong to the document" in str(error):
                return True
            raise

    def loaded(self):
        from selenium.webdriver.support.ui import WebDriverWait
        WebDriverWait(self.driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")

    def sign_in(self, username, password=PASSWORD, next_path=""):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        from selenium.webdriver.support.ui import WebDriverWait
        self.go("/login" + (f"?next={next_path}" if next_path else ""))
        WebDriverWait(self.driver, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")
        login = WebDriverWait(self.driver, 10).until(EC.element_to_be_clickable((By.ID, "login")))
        login.clear()
        login.send_keys(username)
        self.driver.find_element(By.ID, "password").send_keys(password)
        self.click(self.driver.find_element(By.ID, "signin"))

    def did(self, *actions):
        """Notes audit actions this journey performed through the console (checked when the node stops)."""
        self.node.expect_audited.update(actions)

    def sign_out(self):
        from selenium.webdriver.common.by import By
        self.click(self.driver.find_element(By.CSS_SELECTOR, "form.logout button"))

    def main_text(self) -> str:
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.ID, "main").text

    def h1(self) -> str:
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.TAG_NAME, "h1").text

    def shot(self, name):
        """Saves the whole page, from the top (at most 2,400 pixels tall)."""
        from selenium.common.exceptions import WebDriverException
        SHOTS.mkdir(parents=True, exist_ok=True)
        for attempt in range(5):
            try:
                self.loaded()
                height = self.driver.execute_script("return document.documentElement.scrollHeight")
                self.driver.set_window_size(1280, min(max(height, 600), 2400))
                self.driver.execute_script("window.scrollTo(0, 0)")
                self.driver.save_screenshot(str(SHOTS / f"{name}.png"))
                self.driver.set_window_size(1280, 1000)
                return
            except WebDriverException as error:
                # chromedriver still holding a node of the page just replaced: ask again.
                if "does not belong to the document" not in str(error) or attempt == 4:
                    raise
                time.sleep(0.2)

    def accessible(self):
        """axe-core (axe-selenium-python's copy) finds no serious or critical violation here."""
        from axe_selenium_python import Axe
        axe = Axe(self.driver)
        axe.inject()
        results = axe.run()
        bad = [(v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:3])
               for v in results["violations"] if v.get("impact") in ("serious", "critical")]
        assert not bad, f"{self.driver.current_url}: {bad}"


@pytest.fixture
def pages(browser, node):
    return Pages(browser, node)
