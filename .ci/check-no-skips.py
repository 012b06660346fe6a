#!/usr/bin/env python3
"""Fail a CI run whose JUnit report shows a skipped test, or no MariaDB, Redis or browser test.

Usage: check-no-skips.py REPORT.xml (pytest --junitxml). CI has every service
and tool the suite needs, so a skip there hides a test that never ran. Both
.ci/run and the hosted workflow call it.
"""
import sys
import xml.etree.ElementTree as ET

skipped, ran = [], {"mysql": 0, "redis": 0, "browser": 0}
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    name = f"{case.get('classname')}::{case.get('name', '')}"
    skip = case.find("skipped")
    if skip is not None:
        skipped.append(f"{name}: {skip.get('message', '')}")
        continue
    ran["mysql"] += "mysql" in name
    ran["redis"] += "redis" in name
    ran["browser"] += name.startswith("tests.browser.")
print(f"ci: {ran['mysql']} MariaDB-backed, {ran['redis']} Redis-backed and "
      f"{ran['browser']} browser tests ran")
if skipped:
    sys.exit("ci: every test must run here; skipped:\n  " + "\n  ".join(skipped))
if not all(ran.values()):
    sys.exit("ci: the MariaDB-backed, Redis-backed or browser tests did not run")
