"""Rules of docs/layout.md that a tool can check and no other test covers."""

import ast
import os

TESTS = os.path.dirname(os.path.abspath(__file__))


def _marks(decorators):
    return {ast.unparse(decorator) for decorator in decorators}


def _starts_processes(function):
    """Whether `function` itself calls `subprocess.run`, `Popen` or `check_call`."""
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in ("subprocess.run", "subprocess.Popen", "subprocess.check_call"):
                return True
    return False


def _unmarked_process_tests(tree):
    """Tests that start a process, directly or through a helper of their module, unmarked."""
    module_marked = any(
        isinstance(node, ast.Assign)
        and any(ast.unparse(target) == "pytestmark" for target in node.targets)
        and "subprocess" in ast.unparse(node.value)
        for node in tree.body
    )
    helpers = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and not node.name.startswith("test_")
        and _starts_processes(node)
    }
    found = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
            continue
        calls = {ast.unparse(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}
        if not (_starts_processes(node) or calls & helpers):
            continue
        if module_marked or "pytest.mark.subprocess" in _marks(node.decorator_list):
            continue
        found.append(node.name)
    return found


def test_tests_that_start_python_processes_are_marked_subprocess():
    offenders = []
    for root, _, files in os.walk(TESTS):
        for name in sorted(files):
            if name.startswith("test_") and name.endswith(".py"):
                path = os.path.join(root, name)
                with open(path) as source:
                    tree = ast.parse(source.read())
                relative = os.path.relpath(path, TESTS)
                offenders += [f"{relative}::{test}" for test in _unmarked_process_tests(tree)]
    assert offenders == []


def test_the_marker_rule_finds_an_unmarked_test():
    code = (
        "import subprocess\n"
        "def start():\n    subprocess.run(['python'])\n"
        "def test_direct():\n    subprocess.Popen(['python'])\n"
        "def test_through_helper():\n    start()\n"
        "@pytest.mark.subprocess\ndef test_marked():\n    start()\n"
        "def test_plain():\n    pass\n"
    )
    assert _unmarked_process_tests(ast.parse(code)) == ["test_direct", "test_through_helper"]
    assert _unmarked_process_tests(ast.parse("pytestmark = pytest.mark.subprocess\n" + code)) == []


PACKAGE = os.path.join(os.path.dirname(TESTS), "keras_distill")


def _package_trees():
    for root, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                with open(path) as source:
                    yield os.path.relpath(path, PACKAGE), ast.parse(source.read())


def test_step_checks_belong_to_the_distiller_and_read_no_error_text():
    """docs/layout.md, "The step checks": one owner, messages written from numbers."""
    creators = []
    for relative, tree in _package_trees():
        calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        if any(call.endswith("StepChecks") for call in calls):
            creators.append(relative)
        if relative == "_data_checks.py":
            imported = {
                alias.name
                for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names
            }
            assert "re" not in imported, "the step checks parse no text"
            handlers = [n for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler)]
            assert all(handler.name is None for handler in handlers), "no error text is read"
    assert creators == ["distiller.py"]
