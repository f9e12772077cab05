# Every name in one place. Lambda names follow Chalice's {app}-{stage}-{function} so the state machine, the alarms and the
# Lambda role can point at functions that `chalice deploy` creates later.
locals {
  name       = "${var.project}-${var.stage}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = var.region

  lambda_prefix = "${var.chalice_app_name}-${var.stage}"
  # The functions the state machine invokes (key = placeholder stem in statemachine.asl.json).
  step_functions = {
    plan            = "${local.lambda_prefix}-plan"
    validate_output = "${local.lambda_prefix}-validate_output"
    mark_succeeded  = "${local.lambda_prefix}-mark_succeeded"
    mark_failed     = "${local.lambda_prefix}-mark_failed"
  }
  step_function_arns = {
    for key, fn in local.step_functions : key => "arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${fn}"
  }
  # Every function Chalice deploys for this app: the API handler ({app}-{stage}), the step functions, the reconciler
  # and the sweeper (Chalice creates the sweeper's schedule rule itself).
  all_lambda_names = concat(
    [local.lambda_prefix, "${local.lambda_prefix}-reconcile", "${local.lambda_prefix}-sweep"],
    values(local.step_functions),
  )

  runs_table_name       = "${local.name}-runs"
  runs_slot_index       = "runs-holding-slots" # chalicelib/runs.py SLOT_INDEX; the wiring test keeps them equal
  artifacts_bucket_name = "${local.name}-artifacts-${local.account_id}"
  ecr_repository_name   = "${local.name}-runner"
  ecs_cluster_name      = local.name
  runner_family         = "${local.name}-runner"
  runner_container_name = "runner"
  state_machine_name    = local.name
  ecs_log_group_name    = "/aws/ecs/${local.name}" # per stage: two stages side by side never share it
  runner_log_prefix     = "runner"                 # streams runner/<container>/<task id> (awslogs-stream-prefix)
  states_log_group_name = "/aws/vendedlogs/states/${local.name}"
  # One image scheme: a tag per build (the commit), or with track_latest the newest push, pinned by digest.
  runner_image = (var.track_latest
    ? "${aws_ecr_repository.runner.repository_url}@${data.aws_ecr_image.newest[0].image_digest}"
    : "${aws_ecr_repository.runner.repository_url}:${var.runner_image_tag}"
  )
  plan_model           = var.plan_model != "" ? var.plan_model : var.llm_model
  ssm_parameter_prefix = var.ssm_parameter_prefix != "" ? var.ssm_parameter_prefix : "/${var.project}/${var.stage}"
  runner_secret_names  = ["OPENAI_API_KEY", "KAGGLE_USERNAME", "KAGGLE_KEY"]
  runner_secret_arns = {
    for secret in local.runner_secret_names :
    secret => "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${local.ssm_parameter_prefix}/${secret}"
  }

  # S3 layout shared with the runner and the app: artifacts under <run_id>/, the data cache under data-cache/<slug>/
  # (runner/datasource.py CACHE_PREFIX; the wiring test keeps the two equal).
  cache_prefix = "data-cache/"
}
