"""Wiring: Terraform, the generated .chalice/config.json, app.py, the state machine and the runner agree on names.

Everything is read from the real files (python-hcl2 for Terraform, ast for Python, json for the state machine), so a
rename on one side fails here with the missing name spelled out. A test that needs a file that has not landed yet
skips with the file's name as the reason.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from scripts import recordresources
from tests.hcl import FAKE_OUTPUTS, tf_blocks, tf_data, tf_local, tf_output, tf_resource, unquote
from tests.sources import APP, REPO, app_lambdas, parse, require

CONFIG_PY = REPO / "chalicelib" / "config.py"
VOCABULARY_PY = REPO / "chalicelib" / "vocabulary.py"  # the names config.py and the runner share (OPENAI_*, KAGGLE_*)
STATEMACHINE_PY = REPO / "chalicelib" / "statemachine.py"
ASL = REPO / "statemachine.asl.json"
CHALICE_CONFIG = REPO / ".chalice" / "config.json"
RUNNER = REPO / "runner"
DATASOURCE = RUNNER / "datasource.py"
ECS_RUN_TASK_SYNC = "arn:aws:states:::ecs:runTask.sync"

# Names the runner may read that neither the task definition nor the state machine sets, and why.
RUNNER_NAMES_FROM_ELSEWHERE = {
    "AWS_REGION": "set by Fargate",
    "AWS_DEFAULT_REGION": "set by Fargate",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "set by Fargate (task role credentials)",
    "ECS_CONTAINER_METADATA_URI_V4": "set by Fargate",
    "HOME": "set by the image",
    "PATH": "set by the image",
    "KAGGLE_CONFIG_DIR": "the runner sets it itself (a writable temporary directory)",
    "KAGGLE_API_TOKEN": "an optional alternative to KAGGLE_USERNAME/KAGGLE_KEY",
    "OPENAI_BASE_URL": "optional: in the task definition only when var.openai_base_url is set",
    "KAGENT_DATA_MIRROR": "optional, local runs only: the cloud runner has no mirror folder and uses the S3 cache",
    "KAGENT_CACHE_DIR": "the CLI's local data cache (python -m runner); the cloud runner uses the S3 cache",
    "KAGENT_PROGRESS_INTERVAL_S": "optional: make demo lowers it on the local stack; the cloud keeps the 15 s default",
    "KAGENT_FARGATE_VCPU_HOUR_USD": "optional: overrides the built-in Fargate vCPU price of the cost in report.html",
    "KAGENT_FARGATE_GB_HOUR_USD": "optional: overrides the built-in Fargate memory price of the cost in report.html",
}
# The runner's secrets: SSM SecureString parameters, referenced by ARN, never valued in Terraform.
RUNNER_SECRETS = {"OPENAI_API_KEY", "KAGGLE_USERNAME", "KAGGLE_KEY"}
# boto3 calls (and DynamoDB transaction item kinds) -> the IAM action they need.
BOTO3_ACTIONS = {
    "start_execution": "states:StartExecution",
    "describe_execution": "states:DescribeExecution",
    "get_execution_history": "states:GetExecutionHistory",
    "stop_execution": "states:StopExecution",
    "send_email": "ses:SendEmail",
    "send_raw_email": "ses:SendRawEmail",
    "get_object": "s3:GetObject",
    "head_object": "s3:GetObject",
    "download_file": "s3:GetObject",
    "generate_presigned_url": "s3:GetObject",
    "put_object": "s3:PutObject",
    "upload_file": "s3:PutObject",
    "list_objects_v2": "s3:ListBucket",
    "get_parameters": "ssm:GetParameters",
    "get_item": "dynamodb:GetItem",
    "put_item": "dynamodb:PutItem",
    "update_item": "dynamodb:UpdateItem",
    "delete_item": "dynamodb:DeleteItem",
    "query": "dynamodb:Query",
    "scan": "dynamodb:Scan",
    "batch_get_item": "dynamodb:BatchGetItem",
    "batch_write_item": "dynamodb:BatchWriteItem",
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{2,}$")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
_HCL_KEY = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)")


# --- Terraform ------------------------------------------------------------------------------------------------------


def templatefile_keys() -> set[str]:
    """The names state_machine.tf passes to templatefile() for statemachine.asl.json."""
    expression = tf_local("state_machine_definition")
    match = re.search(r"templatefile\(\"[^\"]*statemachine\.asl\.json\",\s*\{(.*)\}\)", expression, re.S)
    assert match, "terraform: local.state_machine_definition does not templatefile() statemachine.asl.json"
    return set(_HCL_KEY.findall(match.group(1)))


def runner_environment_names() -> set[str]:
    """Keys of local.runner_environment (a merge() of maps, so read from the expression text)."""
    return {key for key in _HCL_KEY.findall(tf_local("runner_environment")) if _ENV_NAME.match(key)}


def runner_secret_names() -> set[str]:
    return {unquote(name) for name in tf_local("runner_secret_names")}


def policy_actions(data_name: str, effect: str = "Allow") -> set[str]:
    actions: set[str] = set()
    for statement in tf_data("aws_iam_policy_document", data_name)["statement"]:
        if unquote(statement.get("effect", '"Allow"')) == effect:
            actions.update(unquote(action) for action in statement["actions"])
    return actions


# --- Python sources -------------------------------------------------------------------------------------------------


def config_constants() -> dict[str, str]:
    """Module-level NAME = "ENV_NAME" constants of chalicelib/config.py and of the vocabulary it imports them from."""
    constants = {}
    for node in [*parse(VOCABULARY_PY).body, *parse(CONFIG_PY).body]:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name) and _ENV_NAME.match(node.value.value):
                    constants[target.id] = node.value.value
    return constants


def settings_fields_to_env() -> dict[str, set[str]]:
    """Settings field -> the environment names load_settings reads for it (from the keyword arguments of Settings())."""
    constants = config_constants()
    function = next(
        node for node in parse(CONFIG_PY).body if isinstance(node, ast.FunctionDef) and node.name == "load_settings"
    )
    names_in: dict[str, set[str]] = {}  # locals assigned earlier, e.g. executor = env.get(EXECUTOR, ...)
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            read = {constants[n.id] for n in ast.walk(node.value) if isinstance(n, ast.Name) and n.id in constants}
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names_in[target.id] = read
    fields: dict[str, set[str]] = {}
    for call in ast.walk(function):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Settings":
            for keyword in call.keywords:
                read = {
                    constants[n.id] for n in ast.walk(keyword.value) if isinstance(n, ast.Name) and n.id in constants
                }
                for n in ast.walk(keyword.value):
                    if isinstance(n, ast.Name):
                        read |= names_in.get(n.id, set())
                if keyword.arg:
                    fields[keyword.arg] = read
    assert fields, "chalicelib/config.py: load_settings() builds no Settings(...)"
    return fields


def app_env_names() -> set[str]:
    """Every environment name load_settings reads: what the Lambdas need from the generated config."""
    return set().union(*settings_fields_to_env().values())


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "templates" not in p.relative_to(folder).parts)


def env_reads(paths: Iterable[Path]) -> set[str]:
    """Environment names read in code: os.environ[...] / .get / os.getenv / env.get with a literal or a constant."""
    names: set[str] = set()
    config = config_constants()
    for path in paths:
        tree = parse(path)
        constants = dict(config)
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                        constants[target.id] = node.value.value

        def value_of(expr: ast.expr, constants: dict[str, str] = constants) -> str | None:
            if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
                return expr.value
            if isinstance(expr, ast.Name):
                return constants.get(expr.id)
            if isinstance(expr, ast.Attribute):  # config.RUNS_TABLE
                return config.get(expr.attr)
            return None

        for node in ast.walk(tree):
            key: ast.expr | None = None
            if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute | ast.Name):
                func = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
                target = ast.unparse(node.func)
                if func == "getenv" or (func == "get" and re.search(r"environ|env\b", target)):
                    key = node.args[0]
            elif (
                isinstance(node, ast.Subscript)
                and isinstance(node.ctx, ast.Load)
                and re.search(r"environ|\benv\b", ast.unparse(node.value))
            ):
                key = node.slice
            if key is not None:
                value = value_of(key)
                if value and _ENV_NAME.match(value):
                    names.add(value)
    return names


def chalicelib_modules_imported_by(paths: Iterable[Path]) -> list[Path]:
    """chalicelib modules the given code imports (config.py aside: its reads are counted through Settings fields)."""
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.ImportFrom) and node.module == "chalicelib":
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("chalicelib."):
                names.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("chalicelib."))
    modules = (REPO / "chalicelib" / f"{name}.py" for name in sorted(names - {"config"}))
    return [module for module in modules if module.exists()]


def runner_settings_reads(paths: Iterable[Path]) -> set[str]:
    """Environment names behind the Settings fields the runner uses (settings.runs_table -> KAGENT_RUNS_TABLE)."""
    fields = settings_fields_to_env()
    used: set[str] = set()
    for path in paths:
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Attribute) and node.attr in fields and "settings" in ast.unparse(node.value):
                used |= fields[node.attr]
    return used


def chalicelib_statemachine() -> Any:
    require(STATEMACHINE_PY)
    return importlib.import_module("chalicelib.statemachine")


def asl() -> dict[str, Any]:
    return json.loads(require(ASL).read_text(encoding="utf-8"))


def run_task_states() -> list[dict[str, Any]]:
    states = [s for s in asl()["States"].values() if s.get("Resource") == ECS_RUN_TASK_SYNC]
    assert states, f"statemachine.asl.json: no Task state with Resource {ECS_RUN_TASK_SYNC}"
    return states


def container_overrides() -> list[dict[str, Any]]:
    overrides = []
    for state in run_task_states():
        overrides += state["Parameters"].get("Overrides", {}).get("ContainerOverrides", [])
    assert overrides, "statemachine.asl.json: the ecs:runTask.sync state has no ContainerOverrides"
    return overrides


def invoked_function_stems() -> set[str]:
    """plan, validate_output, ... from the ${<stem>_function_arn} placeholders the state machine invokes."""
    text = require(ASL).read_text(encoding="utf-8")
    return {name.removesuffix("_function_arn") for name in _PLACEHOLDER.findall(text) if name.endswith("_function_arn")}


# --- the state machine ----------------------------------------------------------------------------------------------


def test_every_state_machine_placeholder_is_rendered_by_terraform() -> None:
    placeholders = set(_PLACEHOLDER.findall(require(ASL).read_text(encoding="utf-8")))
    passed = templatefile_keys()
    assert not placeholders - passed, (
        f"statemachine.asl.json placeholders Terraform does not render: {placeholders - passed}"
    )
    assert not passed - placeholders, f"Terraform passes values no placeholder uses: {passed - placeholders}"


def test_terraform_renders_the_placeholders_chalicelib_renders() -> None:
    statemachine = chalicelib_statemachine()

    assert templatefile_keys() == set(statemachine.PLACEHOLDERS), (
        f"terraform templatefile keys {sorted(templatefile_keys())} != chalicelib.statemachine.PLACEHOLDERS"
    )


def test_every_function_the_state_machine_invokes_is_a_lambda_in_app_py() -> None:
    lambdas = app_lambdas()
    missing = sorted(invoked_function_stems() - set(lambdas))
    assert not missing, f"the state machine invokes {missing}, but app.py defines no @app.lambda_function of that name"


def test_terraform_points_the_state_machine_at_the_functions_it_invokes() -> None:
    terraform_stems = set(tf_local("step_functions"))
    assert terraform_stems == invoked_function_stems(), (
        f"terraform local.step_functions {sorted(terraform_stems)} != functions the state machine invokes "
        f"{sorted(invoked_function_stems())}"
    )
    for stem, name in tf_local("step_functions").items():
        assert unquote(name) == "${local.lambda_prefix}-" + stem, (
            f"terraform: {stem} is not named {{app}}-{{stage}}-{stem}"
        )


def test_terraform_makes_a_log_group_and_an_alarm_for_every_lambda_of_app_py() -> None:
    # The Lambda role has no logs:CreateLogGroup: a function Terraform does not know would log nowhere.
    expression = tf_local("all_lambda_names")
    known = set(re.findall(r"\$\{local\.lambda_prefix\}-([a-z0-9_]+)", expression)) | set(tf_local("step_functions"))
    missing = sorted(set(app_lambdas()) - known)
    assert not missing, (
        f"app.py Lambdas without a Terraform log group and alarm (terraform/naming.tf all_lambda_names): {missing}"
    )


def test_the_reconciler_is_a_cloudwatch_event_handler_named_reconcile() -> None:
    assert app_lambdas().get("reconcile") == "on_cw_event", "app.py: no @app.on_cw_event function named reconcile"


def test_the_sweeper_is_a_scheduled_function_named_sweep_with_a_deployed_timeout() -> None:
    assert app_lambdas().get("sweep") == "schedule", "app.py: no @app.schedule function named sweep"
    assert "sweep" in recordresources.LAMBDA_FUNCTIONS, "scripts/recordresources.py: no settings for the sweep function"


def test_terraform_makes_the_sparse_slot_index_the_run_store_queries() -> None:
    runs = importlib.import_module("chalicelib.runs")
    table = tf_resource("aws_dynamodb_table", "runs")
    [index] = [i for i in table["global_secondary_index"] if i["name"] == "${local.runs_slot_index}"]
    assert unquote(tf_local("runs_slot_index")) == runs.SLOT_INDEX
    assert (unquote(index["hash_key"]), unquote(index["range_key"])) == (runs.HOLDING, "queued_at")
    assert unquote(index["projection_type"]) == "KEYS_ONLY"
    types = {unquote(a["name"]): unquote(a["type"]) for a in table["attribute"]}
    assert types == {"run_id": "S", runs.HOLDING: "S", "queued_at": "S", "caller": "S"}
    spec = runs.table_spec("t")  # what the local stack and the moto tests create
    assert {a["AttributeName"]: a["AttributeType"] for a in spec["AttributeDefinitions"]} == types
    [local_index] = [i for i in spec["GlobalSecondaryIndexes"] if i["IndexName"] == runs.SLOT_INDEX]
    assert [k["AttributeName"] for k in local_index["KeySchema"]] == [runs.HOLDING, "queued_at"]


# Chalice function name -> its role's policy document (terraform/iam_lambda_role.tf: one role per function).
LAMBDA_POLICY_DOCUMENTS = {
    function: f"lambda_{function}"
    for function in ("api_handler", "plan", "validate_output", "mark_succeeded", "mark_failed", "reconcile", "sweep")
}


def lambda_statements(function: str | None = None) -> list[dict[str, Any]]:
    """The statements of one function's role policy, or of every function's."""
    functions = [function] if function else list(LAMBDA_POLICY_DOCUMENTS)
    return [s for f in functions for s in tf_data("aws_iam_policy_document", LAMBDA_POLICY_DOCUMENTS[f])["statement"]]


def lambda_actions(effect: str = "Allow") -> set[str]:
    return set().union(*(policy_actions(name, effect) for name in LAMBDA_POLICY_DOCUMENTS.values()))


def lambda_statement(sid: str, function: str) -> dict[str, Any]:
    for statement in lambda_statements(function):
        if unquote(statement.get("sid", "")) == sid:
            return statement
    raise AssertionError(f"terraform/iam_lambda_role.tf: no statement {sid} for {function}")


def test_the_sweeper_may_query_only_the_slot_index_and_describe_only_this_state_machines_executions() -> None:
    query = lambda_statement("FindRunsHoldingSlots", "sweep")
    assert [unquote(a) for a in query["actions"]] == ["dynamodb:Query"]
    assert [unquote(r) for r in query["resources"]] == ["${aws_dynamodb_table.runs.arn}/index/${local.runs_slot_index}"]
    describe = lambda_statement("DescribeRunExecutions", "sweep")
    assert [unquote(a) for a in describe["actions"]] == ["states:DescribeExecution"]
    [resource] = [unquote(r) for r in describe["resources"]]
    assert resource == "${local.run_executions_arn}"
    assert unquote(tf_local("run_executions_arn")).endswith(":execution:${local.state_machine_name}:*")
    assert unquote(tf_resource("aws_sfn_state_machine", "runs")["name"]) == "${local.state_machine_name}"
    listing = lambda_statement("ListCallersRuns", "api_handler")  # GET /runs: the caller index, never the table
    assert [unquote(r) for r in listing["resources"]] == [
        "${aws_dynamodb_table.runs.arn}/index/${local.runs_caller_index}"
    ]
    everywhere = [s for s in lambda_statements() if s is not query and s is not listing]
    assert not any("dynamodb:Query" in (unquote(a) for a in s["actions"]) for s in everywhere)


def templatefile_value(key: str) -> str:
    expression = tf_local("state_machine_definition")
    match = re.search(rf"\b{key}\s*=\s*([^,}}]+)", expression)
    assert match, f"terraform: templatefile() passes no {key}"
    return match.group(1).strip()


def test_the_task_definition_container_is_the_one_the_state_machine_overrides() -> None:
    container = unquote(tf_local("runner_container_name"))
    definitions = tf_resource("aws_ecs_task_definition", "runner")["container_definitions"]
    assert "name = local.runner_container_name" in definitions, (
        "terraform: the runner container is not named local.runner_container_name"
    )
    for override in container_overrides():
        name = override["Name"]
        placeholder = _PLACEHOLDER.fullmatch(name)
        if placeholder:
            assert templatefile_value(placeholder.group(1)) == "local.runner_container_name", (
                f"the state machine overrides container {name}, which Terraform does not render as the task's container"
            )
        else:
            assert name == container, (
                f"the state machine overrides container {name!r}; the task definition has {container!r}"
            )


def test_the_container_name_matches_chalicelib() -> None:
    statemachine = chalicelib_statemachine()

    container = unquote(tf_local("runner_container_name"))
    assert container == statemachine.RUNNER_CONTAINER_NAME, (
        f"terraform names the runner container {container!r}; chalicelib.statemachine.RUNNER_CONTAINER_NAME is "
        f"{statemachine.RUNNER_CONTAINER_NAME!r}"
    )


def test_the_state_machine_carries_the_network_configuration_in_the_execution_input() -> None:
    for state in run_task_states():
        parameters = state["Parameters"]
        assert "NetworkConfiguration.$" in parameters or "NetworkConfiguration" in parameters, (
            "statemachine.asl.json: the ecs:runTask.sync state sets no NetworkConfiguration"
        )


def test_the_app_name_is_the_same_in_app_py_terraform_and_the_generated_config() -> None:
    app_name = next(
        keyword.value.value
        for node in ast.walk(parse(require(APP)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Chalice"
        for keyword in node.keywords
        if keyword.arg == "app_name" and isinstance(keyword.value, ast.Constant)
    )
    variable = next(
        body for block in tf_blocks("variable") for name, body in block.items() if unquote(name) == "chalice_app_name"
    )
    assert unquote(variable["default"]) == app_name, (
        f"terraform var.chalice_app_name defaults to {variable['default']}, app.py says {app_name!r}"
    )
    assert app_name == recordresources.APP_NAME


def test_every_terraform_variable_is_typed_and_described_and_every_output_described() -> None:
    for block in tf_blocks("variable"):
        for name, body in block.items():
            assert "type" in body and body.get("description"), (
                f"terraform variable {unquote(name)} lacks a type or a description"
            )
    for block in tf_blocks("output"):
        for name, body in block.items():
            assert body.get("description"), f"terraform output {unquote(name)} lacks a description"


# --- environment names ----------------------------------------------------------------------------------------------


def test_terraform_gives_the_app_every_name_it_reads() -> None:
    provided = set(tf_output("chalice_environment")) | set(tf_output("chalice_access_environment"))
    needed = app_env_names()
    assert not needed - provided, f"terraform output chalice_environment lacks {sorted(needed - provided)}"
    assert not provided - needed, (
        f"terraform output chalice_environment has names the app never reads: {sorted(provided - needed)}"
    )


def test_every_stage_of_the_generated_config_gives_the_app_every_name_it_reads() -> None:
    config = json.loads(CHALICE_CONFIG.read_text(encoding="utf-8"))
    needed = app_env_names()
    for stage, settings in config["stages"].items():
        provided = set(settings.get("environment_variables", {}))
        if stage == recordresources.LOCAL_STAGE:  # scripts/local_stack.py sets the tunables the shell does not
            provided |= set(recordresources.LOCAL_DEFAULTS)
        missing = needed - provided
        assert not missing, f".chalice/config.json stage {stage} lacks {sorted(missing)}"


def test_the_runner_gets_every_name_it_reads_from_the_task_definition_or_the_state_machine() -> None:
    runner_code = python_files(require(RUNNER / "runner_main.py").parent)
    shared_code = chalicelib_modules_imported_by(runner_code)
    read = env_reads(runner_code + shared_code) | runner_settings_reads(runner_code)
    overrides = {env["Name"] for o in container_overrides() for env in o.get("Environment", [])}
    provided = runner_environment_names() | runner_secret_names() | overrides | set(RUNNER_NAMES_FROM_ELSEWHERE)
    missing = sorted(read - provided)
    assert not missing, (
        f"the runner reads {missing}, which neither the task definition (terraform/runner_task.tf) "
        "nor the state machine's container overrides provide"
    )


def test_the_state_machine_hands_the_runner_its_run() -> None:
    overrides = {env["Name"] for o in container_overrides() for env in o.get("Environment", [])}
    assert {"RUN_ID", "URL", "EMAIL"} <= overrides, (
        f"container overrides lack {sorted({'RUN_ID', 'URL', 'EMAIL'} - overrides)}"
    )


def test_the_task_definition_names_only_config_py_names_or_the_sdks_own() -> None:
    known = set(config_constants().values())
    unknown = sorted(runner_environment_names() - known)
    assert not unknown, f"terraform runner_environment sets names chalicelib/config.py does not define: {unknown}"


def test_the_runner_secrets_come_from_ssm_by_arn_and_never_as_values() -> None:
    assert runner_secret_names() == RUNNER_SECRETS
    definitions = tf_resource("aws_ecs_task_definition", "runner")["container_definitions"]
    assert "valueFrom = local.runner_secret_arns[secret]" in definitions
    assert not RUNNER_SECRETS & runner_environment_names(), "a secret is set as a plain environment value"
    assert not RUNNER_SECRETS & set(tf_output("chalice_environment")), "a secret would land in .chalice/config.json"
    variables = {unquote(name) for block in tf_blocks("variable") for name in block}
    secretish = sorted(v for v in variables if re.search(r"key|secret|token|password", v, re.I))
    assert not secretish, f"terraform variables that look like secrets (they would sit in state): {secretish}"
    assert "ssm:GetParameters" in policy_actions("runner_execution")


def test_the_plan_lambda_reads_exactly_the_runners_ssm_parameters() -> None:
    from chalicelib import credentials  # noqa: PLC0415

    assert set(credentials.SSM_SECRET_NAMES) == runner_secret_names(), (
        f"chalicelib.vocabulary SSM_SECRET_NAMES {sorted(credentials.SSM_SECRET_NAMES)} != terraform "
        f"local.runner_secret_names {sorted(runner_secret_names())}"
    )
    assert tf_output("chalice_environment").get("KAGENT_SSM_PREFIX") == "${local.ssm_parameter_prefix}", (
        "terraform output chalice_environment must hand the app KAGENT_SSM_PREFIX = local.ssm_parameter_prefix"
    )
    ssm = [
        statement
        for statement in lambda_statements()
        if any(unquote(action).startswith(("ssm:", "kms:")) for action in statement["actions"])
    ]
    assert ssm == [s for s in lambda_statements("plan") if s in ssm], "only the Plan function may read SSM"
    assert [[unquote(action) for action in statement["actions"]] for statement in ssm] == [["ssm:GetParameters"]], (
        "the Lambda role should read SSM with ssm:GetParameters only, in one statement"
    )
    assert ssm[0]["resources"] == "${values(local.runner_secret_arns)}", (
        "the Lambda role's ssm:GetParameters must be limited to the runner's parameter ARNs (local.runner_secret_arns)"
    )


# --- storage layout and permissions ---------------------------------------------------------------------------------


def test_the_data_cache_prefix_is_the_runners() -> None:
    source = parse(require(DATASOURCE))
    prefix = next(
        node.value.value
        for node in source.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "CACHE_PREFIX" for t in node.targets)
        and isinstance(node.value, ast.Constant)
    )
    assert unquote(tf_local("cache_prefix")) == f"{prefix}/", (
        f"terraform local.cache_prefix {tf_local('cache_prefix')} != runner/datasource.py CACHE_PREFIX {prefix!r} + '/'"
    )


def test_the_lambda_role_grants_every_aws_call_the_app_makes() -> None:
    needed: set[str] = set()
    for path in [require(APP), *python_files(REPO / "chalicelib")]:
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in BOTO3_ACTIONS:
                needed.add(BOTO3_ACTIONS[node.func.attr])
            if isinstance(node, ast.Dict):
                for key in node.keys:
                    if isinstance(key, ast.Constant) and key.value in {"Put", "Update", "Delete", "ConditionCheck"}:
                        needed.add(BOTO3_ACTIONS[key.value])
    missing = sorted(needed - lambda_actions())
    assert not missing, (
        f"chalicelib calls DynamoDB for {missing}, which the Lambda role (terraform/iam_lambda_role.tf) lacks"
    )


def test_the_task_role_grants_every_s3_call_the_runner_makes() -> None:
    # DynamoDB goes through chalicelib.runs.RunStore, whose admit() the runner never calls: checked by the runner's moto
    # tests, not here. S3 calls are the runner's own.
    needed = {
        BOTO3_ACTIONS[node.func.attr]
        for path in python_files(require(RUNNER / "runner_main.py").parent)
        for node in ast.walk(parse(path))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and BOTO3_ACTIONS.get(node.func.attr, "").startswith("s3:")
    }
    missing = sorted(needed - policy_actions("runner_task"))
    assert not missing, (
        f"the runner makes S3 calls needing {missing}; the task role (terraform/iam_runner_roles.tf) lacks them"
    )


def test_the_lambda_role_may_start_executions_send_email_and_read_artifacts_but_not_the_cache() -> None:
    allowed = lambda_actions()
    assert {"states:StartExecution", "ses:SendEmail", "s3:GetObject"} <= allowed
    for function, document in LAMBDA_POLICY_DOCUMENTS.items():
        if "s3:GetObject" in policy_actions(document):
            assert "s3:GetObject" in policy_actions(document, effect="Deny"), f"{function} may read the data cache"
    assert not any(a.endswith(":*") or a == "*" for a in allowed), f"wildcard actions in the Lambda roles: {allowed}"


def test_the_state_machine_role_holds_the_run_task_sync_set_and_passes_only_the_runner_roles() -> None:
    statements = tf_data("aws_iam_policy_document", "state_machine")["statement"]
    actions = policy_actions("state_machine")
    assert {"ecs:RunTask", "ecs:StopTask", "ecs:DescribeTasks", "iam:PassRole", "lambda:InvokeFunction"} <= actions
    assert {"events:PutTargets", "events:PutRule", "events:DescribeRule"} <= actions
    pass_role = next(s for s in statements if "iam:PassRole" in [unquote(a) for a in s["actions"]])
    assert sorted(pass_role["resources"]) == ["${aws_iam_role.runner_execution.arn}", "${aws_iam_role.runner_task.arn}"]
    assert any(unquote(c["variable"]) == "iam:PassedToService" for c in pass_role["condition"])


# --- the generated config -------------------------------------------------------------------------------------------


def test_the_committed_config_is_what_the_generator_writes() -> None:
    committed = json.loads(CHALICE_CONFIG.read_text(encoding="utf-8"))
    regenerated = recordresources.build_config(committed, None)
    assert committed == regenerated, (
        ".chalice/config.json differs from what scripts/recordresources.py writes: edit LOCAL_ENVIRONMENT there "
        "(or Terraform), then run python scripts/recordresources.py --local-only"
    )
    assert "Do not edit this file by hand" in committed["_generated_by"]


def test_the_local_stage_runs_offline_with_the_local_executor() -> None:
    local = json.loads(CHALICE_CONFIG.read_text(encoding="utf-8"))["stages"]["local"]["environment_variables"]
    assert local["KAGENT_EXECUTOR"] == "local"
    assert local["AWS_ACCESS_KEY_ID"] == "testing"
    # Tunables come from scripts/local_stack.py's defaults, so the shell can override them (chalice local would not let
    # it override config.json), and the emulator's endpoint follows MOTO_PORT.
    assert recordresources.LOCAL_DEFAULTS["KAGENT_OUTBOX"] == ".local/outbox"
    assert recordresources.LOCAL_DEFAULTS["KAGENT_DATA_MIRROR"] == "examples/mirror"
    assert not set(local) & (set(recordresources.LOCAL_DEFAULTS) | {"AWS_ENDPOINT_URL"})


def test_a_deployed_stage_hands_chalice_the_terraform_role_and_names(tmp_path: Path) -> None:
    config_path = tmp_path / "config.json"
    outputs_path = tmp_path / "outputs.json"
    outputs_path.write_text(json.dumps(FAKE_OUTPUTS), encoding="utf-8")
    assert recordresources.main(["--outputs", str(outputs_path), "--config", str(config_path)]) == 0
    written = json.loads(config_path.read_text(encoding="utf-8"))
    dev = written["stages"]["dev"]
    assert dev["manage_iam_role"] is False
    assert dev["iam_role_arn"] == "arn:aws:iam::123456789012:role/kagent-dev-lambda"
    assert dev["environment_variables"] == {
        "KAGENT_ALLOWED_RECIPIENTS": "example.com",
        "KAGENT_OUTBOX": "",
        "KAGENT_STAGE": "dev",
    }
    assert set(written["stages"]) == {"dev", "local"}


def test_recording_a_second_stage_keeps_the_first(tmp_path: Path) -> None:
    config_path = tmp_path / "config.json"
    first = recordresources.build_config(None, FAKE_OUTPUTS)
    prod_outputs = {**FAKE_OUTPUTS, "stage": {"value": "prod"}}
    both = recordresources.build_config(first, prod_outputs)
    config_path.write_text(recordresources.render(both), encoding="utf-8")
    assert set(json.loads(config_path.read_text(encoding="utf-8"))["stages"]) == {"dev", "prod", "local"}


def test_a_torn_down_stage_can_be_forgotten(tmp_path: Path) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text(recordresources.render(recordresources.build_config(None, FAKE_OUTPUTS)), encoding="utf-8")
    assert recordresources.main(["--forget", "dev", "--config", str(config_path)]) == 0
    assert set(json.loads(config_path.read_text(encoding="utf-8"))["stages"]) == {"local"}


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({}, "terraform outputs lack stage, chalice_environment, lambda_role_arn"),
        ({**FAKE_OUTPUTS, "stage": {"value": "local"}}, "must name a deployed stage"),
        ({**FAKE_OUTPUTS, "lambda_role_arn": {"value": "kagent-dev-lambda"}}, "must be an IAM role ARN"),
        ({**FAKE_OUTPUTS, "chalice_environment": {"value": {"KAGENT_MAX_RUNNING": 2}}}, "must map names to strings"),
        ({**FAKE_OUTPUTS, "stage": "dev"}, "is not in `terraform output -json` form"),
    ],
)
def test_unusable_outputs_are_refused_with_a_one_line_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], outputs: dict[str, Any], message: str
) -> None:
    outputs_path = tmp_path / "outputs.json"
    outputs_path.write_text(json.dumps(outputs), encoding="utf-8")
    config_path = tmp_path / "config.json"
    assert recordresources.main(["--outputs", str(outputs_path), "--config", str(config_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error
    assert not config_path.exists()


def test_a_missing_outputs_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert recordresources.main(["--outputs", str(tmp_path / "nope.json"), "--config", str(tmp_path / "c.json")]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err
