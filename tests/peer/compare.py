"""Differences between a test suite's native run and its run under agentfs.

Usage: compare.py NATIVE.xml SHIMMED.xml SKIPLIST [SUITE]

Both files are JUnit XML (CPython's regrtest --junit-xml). A difference is a
test that passed natively and failed, errored or is missing under the shim.
The skip list holds one test id per line, each with `# the reason` after it
(reviewed: a line without a reason is an error). Prints every difference,
marked SKIPPED (listed) or NEW; exits 1 if any is NEW, 2 on a bad skip list."""
import re
import sys
import xml.etree.ElementTree as ET


def outcomes(path):
    """test id -> "pass" | "fail" | "skip"."""
    found = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        if case.get("classname"):
            name = f"{case.get('classname')}.{name}"
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            found[name] = "fail"
        elif "skipped" in tags:
            found[name] = "skip"
        else:
            found.setdefault(name, "pass")
    return found


def skip_list(path):
    listed = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = re.fullmatch(r"(\S+)\s+#\s*(\S.*)", line)
            if not m:
                sys.exit(f"{path}:{n}: every entry needs a reason: `<test id>  # <why>`")
            listed[m.group(1)] = m.group(2)
    return listed


def main():
    native, shimmed, listed = outcomes(sys.argv[1]), outcomes(sys.argv[2]), skip_list(sys.argv[3])
    suite = sys.argv[4] if len(sys.argv) > 4 else "suite"
    new = 0
    ran = sum(1 for v in native.values() if v == "pass")
    for test, result in sorted(native.items()):
        if result != "pass":
            continue
        under = shimmed.get(test, "missing")
        if under in ("pass", "skip"):
            continue
        if test in listed:
            print(f"SKIPPED {suite}: {test} ({under} under agentfs): {listed[test]}")
        else:
            new += 1
            print(f"NEW {suite}: {test} passes natively, {under} under agentfs")
    still = {t for t in native if shimmed.get(t, "missing") not in ("pass", "skip")}
    unused = sorted(t for t in set(listed) - still if native.get(t) == "pass")
    for test in unused:
        print(f"NOTE {suite}: skip-list entry no longer needed: {test}")
    print(f"{suite}: {ran} tests pass natively, {new} new failures under agentfs")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
