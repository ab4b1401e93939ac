"""The web console's journeys, end to end in headless Chromium against a real node.

Each journey is what one of the people the console serves does: a consumer at a county bureau finds
data and applies for it; the steward and the city's data security officer decide; a teacher files a
data-quality problem with an attachment and the county's data service unit works it; county IT
checks the node. Refusals (a teacher opening another school's pupil, a consumer approving its own
request, a form posted from another origin) are journeys too. Every page visited passes an axe-core
scan with no serious or critical violation, and each journey saves a screenshot.
"""
import datetime
import http.server
import json
import re
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import PASSWORD, binary

RESOURCE = "dz.student.basic"  # 学生基础数据: minors' personal fields, conditional sharing
OWN_PUPIL = "S5117030001-0001"  # a pupil of teacher.wang's school
OTHER_PUPIL = "S5117020001-0001"  # a pupil of another county's school


def by_id(driver, element_id):
    return driver.find_element(By.ID, element_id)


def wait_for(driver, condition, timeout=10):
    return WebDriverWait(driver, timeout).until(condition)


def apply_for_roster(pages, purpose="学位预警分析"):
    """bureau.zhou applies for the student roster's name and grade, masked, 90 days."""
    pages.go(f"/catalog/{RESOURCE}/apply")
    by_id(pages.driver, "purpose").send_keys(purpose)
    for name in ("name", "grade"):
        pages.driver.find_element(By.CSS_SELECTOR, f"input[name=fields][value={name}]").click()
    pages.click(by_id(pages.driver, "submit-apply"))
    return re.findall(r"request-(R[^\"]+)", pages.driver.page_source)


def test_sign_in_wrong_password_then_right_and_out(pages):
    pages.sign_in("bureau.zhou", password="not the password")
    assert "登录失败" in by_id(pages.driver, "login-error").text
    pages.accessible()
    pages.shot("01-sign-in-failed")
    pages.sign_in("bureau.zhou")
    assert pages.h1() == "数据目录"
    pages.sign_out()
    assert pages.h1() == "登录"
    # After logging out, a page sends the browser back to the sign-in, then where it was going.
    pages.go("/requests")
    assert "/login?next=" in pages.driver.current_url
    pages.sign_in("bureau.zhou", next_path="/requests")
    assert pages.h1() == "我的申请与授权"


def test_consumer_searches_follows_and_applies(pages):
    pages.sign_in("bureau.zhou")
    # Two-character and one-character Chinese queries.
    by_id(pages.driver, "q").send_keys("学籍")
    pages.click(by_id(pages.driver, "search"))
    assert "学生基础数据" in pages.main_text()
    one = int(re.search(r"共 (\d+) 个资源", pages.main_text()).group(1))
    pages.go("/catalog?q=" + "生")
    assert int(re.search(r"共 (\d+) 个资源", pages.main_text()).group(1)) >= one
    # Facets: pick a sharing class; the counts and the filter follow.
    pages.go("/catalog")
    everything = int(re.search(r"共 (\d+) 个资源", pages.main_text()).group(1))
    facet = pages.driver.find_element(By.PARTIAL_LINK_TEXT, "有条件共享")
    pages.click(facet)
    narrowed = int(re.search(r"共 (\d+) 个资源", pages.main_text()).group(1))
    assert 0 < narrowed <= everything
    assert "sharing=conditional" in pages.driver.current_url
    pages.accessible()
    pages.shot("02-catalog-search")
    # Detail: fields with their classification, a masked sample, the manual.
    pages.go(f"/catalog/{RESOURCE}")
    text = pages.main_text()
    assert "字段与分级" in text and "高度敏感" in text and "身份证号脱敏" in text
    sample = by_id(pages.driver, "sample").text
    assert "ID-" in sample  # national ids pseudonymised for this reader
    assert not re.search(r"\b51\d{16}\b", sample)
    assert "接口说明" in text
    pages.accessible()
    pages.shot("03-resource-detail")
    # Follow, then find it among the followed.
    pages.click(by_id(pages.driver, "follow"))
    assert "已关注" in pages.main_text()
    pages.go("/followed")
    assert "学生基础数据" in pages.main_text()
    pages.accessible()
    # Apply; the request waits for the steward.
    ids = apply_for_roster(pages)
    assert ids
    assert "待数据管理员审批" in pages.main_text()
    pages.did("identity.Login", "sharing.RequestAccess")
    pages.accessible()
    pages.shot("04-my-requests")


def test_consumer_cannot_approve_its_own_request(pages):
    pages.sign_in("bureau.zhou")
    request_id = apply_for_roster(pages, purpose="自批测试")[0]
    # No approvals section for a consumer, and nothing to decide on its page.
    assert "审批" not in pages.driver.find_element(By.CSS_SELECTOR, "nav.sections").text
    pages.go("/approvals")
    assert "没有待审批的申请" in pages.main_text()
    # A form it builds itself, with its own valid form token, is still refused by the service.
    token = pages.driver.find_element(By.CSS_SELECTOR, "input[name=_csrf]").get_attribute("value")
    pages.driver.execute_script(
        """const f = document.createElement('form'); f.method = 'post'; f.action = '/approvals/' + arguments[0];
        for (const [k, v] of [['_csrf', arguments[1]], ['decision', 'approve'], ['reason', 'mine'], ['version', '1']]) {
          const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }
        document.body.appendChild(f); f.submit();""", request_id, token)
    wait_for(pages.driver, EC.title_contains("无权操作"))
    pages.accessible()
    pages.shot("05-self-approval-refused")
    pages.go("/requests")
    card = by_id(pages.driver, f"request-{request_id}").text
    assert "待数据管理员审批" in card


def test_steward_and_security_officer_decide_then_steward_suspends_and_revokes(pages):
    pages.sign_in("bureau.zhou")
    request_id = apply_for_roster(pages, purpose="控辍保学分析")[0]
    pages.sign_out()
    # The steward approves: minors' personal fields go on to the security officer.
    pages.sign_in("steward.li")
    pages.go("/approvals")
    card = by_id(pages.driver, f"request-{request_id}")
    assert "含未成年人个人信息" in card.text and "提交申请" in card.text
    pages.accessible()
    pages.shot("06-approvals-inbox")
    card.find_element(By.TAG_NAME, "textarea").send_keys("用途明确，同意")
    pages.click(card.find_element(By.CSS_SELECTOR, "button[value=approve]"))
    assert "待数据安全官审批" in pages.main_text()
    pages.sign_out()
    pages.sign_in("officer.chen")
    pages.go("/approvals")
    card = by_id(pages.driver, f"request-{request_id}")
    assert "数据管理员批准" in card.text and "用途明确，同意" in card.text
    assert "steward.li" in card.text  # who decided, by name
    card.find_element(By.TAG_NAME, "textarea").send_keys("脱敏提供")
    pages.click(card.find_element(By.CSS_SELECTOR, "button[value=approve]"))
    assert "已批准" in pages.main_text()
    pages.sign_out()
    # The consumer sees the grant.
    pages.sign_in("bureau.zhou")
    pages.go("/requests")
    assert "已批准" in by_id(pages.driver, f"request-{request_id}").text
    assert "生效中" in pages.main_text()
    pages.sign_out()
    # The steward suspends, resumes and revokes it (revoking asks first).
    pages.sign_in("steward.li")
    pages.go("/approvals")
    grant = by_id(pages.driver, f"grant-{request_id}")
    grant.find_element(By.NAME, "reason").send_keys("核查中")
    pages.click(grant.find_element(By.CSS_SELECTOR, "button[value=suspend]"))
    assert "已暂停" in by_id(pages.driver, f"grant-{request_id}").text
    grant = by_id(pages.driver, f"grant-{request_id}")
    pages.click(grant.find_element(By.CSS_SELECTOR, "button[value=resume]"))
    assert "生效中" in by_id(pages.driver, f"grant-{request_id}").text
    grant = by_id(pages.driver, f"grant-{request_id}")
    grant.find_element(By.NAME, "reason").send_keys("项目结束")
    pages.click(grant.find_element(By.CSS_SELECTOR, "button[value=revoke]"), alert=True)
    assert "已撤销" in by_id(pages.driver, f"grant-{request_id}").text
    pages.did("sharing.Decide", "sharing.ChangeGrant")
    pages.accessible()


def test_teacher_files_a_data_quality_problem_and_the_county_works_it(pages, tmp_path):
    evidence = tmp_path / "出生证明.txt"
    evidence.write_text("出生证明（扫描件说明）", encoding="utf-8")
    pages.sign_in("teacher.wang")
    pages.go("/orders/new")
    Select(by_id(pages.driver, "kind")).select_by_visible_text("数据质量问题")
    Select(by_id(pages.driver, "priority")).select_by_value("2")
    by_id(pages.driver, "title").send_keys("学生出生日期录入错误")
    by_id(pages.driver, "description").send_keys("一年级一班学生的出生日期与出生证明不符。")
    by_id(pages.driver, "resource").send_keys(RESOURCE)
    by_id(pages.driver, "record").send_keys(OWN_PUPIL)
    by_id(pages.driver, "attachment").send_keys(str(evidence))
    pages.accessible()
    pages.click(by_id(pages.driver, "submit-order"))
    assert "工单已提交" in pages.main_text()
    order_url = pages.driver.current_url.split("?")[0]
    assert "出生证明.txt" in pages.main_text()
    assert by_id(pages.driver, "order-state").text == "已提交"
    pages.sign_out()
    # The county's data service unit: the queue, then accept, start, resolve.
    pages.sign_in("dachuan.it")
    pages.go("/orders")
    assert "学生出生日期录入错误" in pages.main_text()
    pages.accessible()
    pages.shot("07-work-order-queue")
    pages.driver.get(order_url)
    for action, state in (("受理", "已受理"), ("开始处理", "处理中"), ("标记已解决", "已解决")):
        by_id(pages.driver, "note").send_keys(f"{action}：已核对学籍")
        pages.click(pages.driver.find_element(By.XPATH, f"//form[@id='act-form']//button[text()='{action}']"))
        assert by_id(pages.driver, "order-state").text == state, pages.main_text()
    timeline = by_id(pages.driver, "timeline").text
    assert "受理" in timeline and "标记已解决" in timeline and "dachuan.it" in timeline
    pages.accessible()
    pages.shot("08-work-order-detail")
    # Statistics with server-drawn charts.
    pages.go("/orders/stats")
    assert int(by_id(pages.driver, "stats-total").text) >= 1
    assert len(pages.driver.find_elements(By.CSS_SELECTOR, "svg.chart")) == 2
    pages.accessible()
    pages.shot("09-work-order-stats")
    pages.sign_out()
    # The teacher verifies and closes.
    pages.sign_in("teacher.wang")
    pages.driver.get(order_url)
    pages.click(pages.driver.find_element(By.XPATH, "//form[@id='act-form']//button[text()='确认关闭']"))
    assert by_id(pages.driver, "order-state").text == "已关闭"
    pages.did("workorder.Submit", "workorder.Act")


def test_teacher_sees_own_pupil_clear_not_another_schools_and_county_sees_masked(pages):
    pages.sign_in("teacher.wang")
    # Looked up by id: her own pupil is found; another county's pupil is not (as GetPerson says).
    pages.go(f"/people?q={OWN_PUPIL}")
    assert pages.driver.find_elements(By.CSS_SELECTOR, f"a[href='/people/{OWN_PUPIL}']")
    pages.go(f"/people?q={OTHER_PUPIL}")
    assert not pages.driver.find_elements(By.CSS_SELECTOR, f"a[href='/people/{OTHER_PUPIL}']")
    assert "51" not in pages.main_text().replace(OTHER_PUPIL, "")
    pages.go(f"/people/{OWN_PUPIL}")
    record = by_id(pages.driver, "person").text
    assert re.search(r"身份证号\s*51\d{16}", record), record
    assert not pages.driver.find_elements(By.ID, "masked-notice")
    pages.accessible()
    pages.go(f"/people/{OTHER_PUPIL}")
    assert pages.h1() == "无权操作"
    assert "51" not in pages.main_text().replace(OTHER_PUPIL, "")
    pages.accessible()
    pages.shot("10-other-school-refused")
    pages.sign_out()
    pages.sign_in("dachuan.it")
    pages.go(f"/people/{OWN_PUPIL}")
    record = by_id(pages.driver, "person").text
    assert by_id(pages.driver, "masked-notice")
    assert "ID-" in record and not re.search(r"51\d{16}", record)
    assert "*" in pages.h1()
    pages.accessible()
    pages.shot("11-person-masked")


def test_county_it_sees_its_nodes(pages):
    pages.sign_in("dachuan.it")
    pages.go("/node")
    text = pages.main_text()
    assert "central" in text
    row = by_id(pages.driver, "downstream").text
    assert "school-5117030002" in row and "待注册" in row and "从未" in row
    pages.accessible()
    pages.shot("12-node-status")
    # A teacher has no node page.
    pages.sign_out()
    pages.sign_in("teacher.wang")
    pages.go("/node")
    assert pages.h1() == "无权操作"


def test_a_form_posted_from_another_origin_is_refused(pages, tmp_path):
    """A page on another port of the same host (same-site: SameSite cookies do go along) posts
    a steward's decision; the console refuses it and nothing changes."""
    pages.sign_in("bureau.zhou")
    request_id = apply_for_roster(pages, purpose="跨站测试")[0]
    pages.sign_out()
    pages.sign_in("steward.li")
    attack = tmp_path / "index.html"
    attack.write_text(f"""<!doctype html><html lang="en"><title>prize</title><body>
      <form id="f" method="post" action="{pages.node.url}/approvals/{request_id}">
      <input name="decision" value="approve"><input name="reason" value="csrf"><input name="version" value="1">
      <input name="_csrf" value="guessed"></form><script>document.getElementById('f').submit()</script></body></html>""")
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pages.driver.get(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        wait_for(pages.driver, EC.title_contains("无权操作"))
        assert "表单已失效或来自其他网站" in pages.main_text()
        pages.shot("13-csrf-refused")
    finally:
        server.shutdown()
    pages.go("/approvals")
    assert "待数据管理员审批" in by_id(pages.driver, f"request-{request_id}").text
