# `terraform test` (Terraform >= 1.7: mock_provider), run by `make check-terraform` offline: no AWS, no credentials.
# Plans only; the few computed values the assertions read are given at plan time (override_during = plan).
# The names that cross the Terraform/Chalice seam, the state machine's Lambda ARNs, the state machine role's
# RunTask + TagResource + PassRole statements, the failure notification, and two stages side by side.
mock_provider "aws" {
  override_data {
    target = data.aws_caller_identity.current
    values = { account_id = "123456789012", arn = "arn:aws:iam::123456789012:root", user_id = "AIDEXAMPLE" }
  }
  override_data {
    target = data.aws_partition.current
    values = { partition = "aws", dns_suffix = "amazonaws.com" }
  }
  override_data {
    target = data.aws_vpc.default
    values = { id = "vpc-0123456789abcdef0" }
  }
  override_data {
    target = data.aws_subnets.default
    values = { ids = ["subnet-0bbbbbbbbbbbbbbbb", "subnet-0aaaaaaaaaaaaaaaa"] }
  }
  # Policy documents render their JSON for real only against the real provider; the mock gives each a valid document
  # so that the role policies are accepted. The statements themselves are asserted on the data sources' inputs.
  override_resource {
    target          = aws_ecr_repository.runner
    override_during = plan
    values          = { repository_url = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/kagent-dev-runner" }
  }
  override_resource {
    target          = aws_ecs_cluster.runner
    override_during = plan
    values          = { arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/kagent-dev" }
  }
  override_resource {
    target          = aws_ecs_task_definition.runner
    override_during = plan
    values          = { arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/kagent-dev-runner:1" }
  }
  override_resource {
    target          = aws_iam_role.runner_execution
    override_during = plan
    values          = { arn = "arn:aws:iam::123456789012:role/kagent-dev-runner-execution" }
  }
  override_resource {
    target          = aws_iam_role.runner_task
    override_during = plan
    values          = { arn = "arn:aws:iam::123456789012:role/kagent-dev-runner-task" }
  }
  override_resource {
    target          = aws_sfn_state_machine.runs
    override_during = plan
    values          = { arn = "arn:aws:states:eu-west-1:123456789012:stateMachine:kagent-dev" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  override_data {
    target          = data.aws_ecr_image.newest
    override_during = plan
    values          = { image_digest = "sha256:0000000000000000000000000000000000000000000000000000000000000001" }
  }
}

variables {
  stage            = "dev"
  region           = "eu-west-1"
  runner_image_tag = "0123456789ab"
  ses_from_email   = "kagent@example.com"
  alarm_email      = "oncall@example.com"
}

run "names_cross_the_seam" {
  command = plan

  assert {
    condition     = output.stage == "dev" && output.chalice_app_name == "kagent" && output.region == "eu-west-1"
    error_message = "stage, chalice_app_name and region outputs must be what recordresources.py hands Chalice"
  }
  assert {
    condition     = output.chalice_environment.KAGENT_SSM_PREFIX == "/kagent/dev" && output.ssm_parameter_prefix == "/kagent/dev"
    error_message = "the SSM path must be /<project>/<stage>, the same for the app and the README's put-parameter loop"
  }
  assert {
    condition = alltrue([
      for secret in jsondecode(aws_ecs_task_definition.runner.container_definitions)[0].secrets :
      secret.valueFrom == "arn:aws:ssm:eu-west-1:123456789012:parameter/kagent/dev/${secret.name}"
    ])
    error_message = "the runner's secrets must be the parameters under ssm_parameter_prefix, in this region and account"
  }
  assert {
    condition = toset(keys(aws_cloudwatch_log_group.lambda)) == toset([
      "kagent-dev", "kagent-dev-plan", "kagent-dev-validate_output", "kagent-dev-mark_succeeded",
      "kagent-dev-mark_failed", "kagent-dev-reconcile", "kagent-dev-sweep",
    ])
    error_message = "Lambda names must follow Chalice's {app}-{stage}-{function} for the seven functions of app.py"
  }
  assert {
    condition     = aws_ecs_task_definition.runner.family == "kagent-dev-runner" && aws_dynamodb_table.runs.name == "kagent-dev-runs"
    error_message = "runner family and runs table must be named <project>-<stage>-..."
  }
}

run "the_state_machine_invokes_the_lambdas_chalice_deploys" {
  command = plan

  assert {
    condition = [
      for state in ["Plan", "ValidateOutput", "MarkSucceeded", "MarkFailed"] :
      jsondecode(aws_sfn_state_machine.runs.definition).States[state].Resource
      ] == [
      "arn:aws:lambda:eu-west-1:123456789012:function:kagent-dev-plan",
      "arn:aws:lambda:eu-west-1:123456789012:function:kagent-dev-validate_output",
      "arn:aws:lambda:eu-west-1:123456789012:function:kagent-dev-mark_succeeded",
      "arn:aws:lambda:eu-west-1:123456789012:function:kagent-dev-mark_failed",
    ]
    error_message = "the state machine must name the step Lambdas by Chalice's names, in the stage's region and account"
  }
  assert {
    condition = toset(data.aws_iam_policy_document.state_machine.statement[0].resources) == toset(flatten([
      for fn in ["plan", "validate_output", "mark_succeeded", "mark_failed"] :
      ["arn:aws:lambda:eu-west-1:123456789012:function:kagent-dev-${fn}", "arn:aws:lambda:eu-west-1:123456789012:function:kagent-dev-${fn}:*"]
    ]))
    error_message = "the state machine role must invoke exactly the four step Lambdas"
  }
}

run "the_state_machine_role_runs_tags_and_passes" {
  command = plan

  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.state_machine.statement :
      s.actions == toset(["ecs:RunTask"]) && s.resources == toset(["arn:aws:ecs:eu-west-1:123456789012:task-definition/kagent-dev-runner:*"])
    ])
    error_message = "ecs:RunTask must be allowed on the runner family's revisions"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.state_machine.statement :
      s.actions == toset(["ecs:TagResource"])
      && s.resources == toset(["arn:aws:ecs:eu-west-1:123456789012:task/kagent-dev/*"])
      && anytrue([for c in s.condition : c.variable == "ecs:CreateAction" && toset(c.values) == toset(["RunTask"])])
    ])
    error_message = "PropagateTags needs ecs:TagResource on the cluster's tasks, limited to ecs:CreateAction RunTask"
  }
  assert {
    condition = anytrue([
      for s in data.aws_iam_policy_document.state_machine.statement :
      s.actions == toset(["iam:PassRole"]) && s.resources == toset([
        "arn:aws:iam::123456789012:role/kagent-dev-runner-execution", "arn:aws:iam::123456789012:role/kagent-dev-runner-task",
      ])
      && anytrue([for c in s.condition : c.variable == "iam:PassedToService" && toset(c.values) == toset(["ecs-tasks.amazonaws.com"])])
    ])
    error_message = "iam:PassRole must pass exactly the runner's two roles, to ECS tasks only"
  }
}

run "a_failed_workflow_mails_its_execution_arn" {
  command = plan

  assert {
    condition = jsondecode(aws_cloudwatch_event_rule.execution_ended_badly.event_pattern).detail.status == [
      "FAILED", "TIMED_OUT", "ABORTED",
    ]
    error_message = "the rule must match executions that failed, timed out or were aborted"
  }
  assert {
    condition     = aws_cloudwatch_event_target.execution_ended_badly.input_transformer[0].input_paths.execution == "$.detail.executionArn"
    error_message = "the notification must carry the execution ARN"
  }
  assert {
    condition     = strcontains(aws_cloudwatch_event_target.execution_ended_badly.input_transformer[0].input_template, "<execution>")
    error_message = "the message must print the execution ARN"
  }
  assert {
    condition = (
      jsondecode(aws_ecs_task_definition.runner.container_definitions)[0].logConfiguration.options["awslogs-stream-prefix"] == "runner"
      && aws_cloudwatch_log_group.runner.name == "/aws/ecs/kagent-dev"
    )
    error_message = "runner logs must go to the stage's own log group, streams under the runner prefix"
  }
}

run "image_by_commit_tag" {
  command = plan

  assert {
    condition     = endswith(jsondecode(aws_ecs_task_definition.runner.container_definitions)[0].image, ":0123456789ab")
    error_message = "runner_image_tag must name the image"
  }
}

run "image_tracks_the_newest_push" {
  command = plan
  variables {
    runner_image_tag = ""
    track_latest     = true
  }

  assert {
    condition     = endswith(jsondecode(aws_ecs_task_definition.runner.container_definitions)[0].image, "@sha256:0000000000000000000000000000000000000000000000000000000000000001")
    error_message = "track_latest must pin the newest image by digest"
  }
}

run "image_named_two_ways_is_refused" {
  command = plan
  variables {
    track_latest = true
  }
  expect_failures = [aws_ecs_task_definition.runner]
}

run "image_named_no_way_is_refused" {
  command = plan
  variables {
    runner_image_tag = ""
  }
  expect_failures = [aws_ecs_task_definition.runner]
}

# Two stages in one account with the default project: every name the prod stage makes is its own. Compared with the
# dev run above, and every stage-scoped name carries <project>-<stage>; what is shared on purpose is the managed rule
# StepFunctionsGetEventsForECSTaskRule (made by Step Functions, one per account) and, when both stages send from one
# address, the SES identity (the second stage sets manage_ses_identity = false).
run "two_stages_side_by_side" {
  command = plan
  variables {
    stage               = "prod"
    manage_ses_identity = false
  }

  assert {
    condition = alltrue([
      output.runs_table_name != run.names_cross_the_seam.runs_table_name,
      output.artifacts_bucket_name != run.names_cross_the_seam.artifacts_bucket_name,
      output.runner_log_group != run.names_cross_the_seam.runner_log_group,
      output.state_machine_log_group != run.names_cross_the_seam.state_machine_log_group,
      output.ssm_parameter_prefix != run.names_cross_the_seam.ssm_parameter_prefix,
    ])
    error_message = "dev and prod must not share a table, bucket, log group or SSM path"
  }
  assert {
    condition = alltrue(concat(
      [for name in keys(aws_cloudwatch_log_group.lambda) : startswith(name, "kagent-prod")],
      [for name in [
        aws_iam_role.lambda.name, aws_iam_role.runner_execution.name, aws_iam_role.runner_task.name,
        aws_iam_role.state_machine.name, aws_ecr_repository.runner.name, aws_ecs_cluster.runner.name,
        aws_ecs_task_definition.runner.family, aws_sfn_state_machine.runs.name, aws_sns_topic.alarms.name,
        aws_security_group.runner.name, aws_cloudwatch_event_rule.runner_task_failed.name,
        aws_cloudwatch_event_rule.execution_ended_badly.name, aws_cloudwatch_log_group.runner.name,
        aws_cloudwatch_log_group.state_machine.name,
      ] : strcontains(name, "kagent-prod")],
      [for alarm in values(aws_cloudwatch_metric_alarm.lambda_errors) : startswith(alarm.alarm_name, "kagent-prod")],
      [for alarm in values(aws_cloudwatch_metric_alarm.executions_ended_badly) : startswith(alarm.alarm_name, "kagent-prod")],
    ))
    error_message = "every stage-scoped name must carry kagent-prod"
  }
  assert {
    condition     = length(aws_ses_email_identity.sender) == 0 && output.chalice_environment.KAGENT_SES_SENDER == "kagent@example.com"
    error_message = "a stage that shares the sender must not own (and on destroy delete) the other stage's SES identity"
  }
}
