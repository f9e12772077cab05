# The state machine's role: invoke the four step Lambdas, run, tag and watch the runner task (the ecs:runTask.sync set),
# pass exactly the runner's two roles to ECS, and deliver its own logs.
data "aws_iam_policy_document" "states_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "state_machine" {
  name               = "${local.name}-state-machine"
  assume_role_policy = data.aws_iam_policy_document.states_assume.json
}

data "aws_iam_policy_document" "state_machine" {
  statement {
    sid       = "InvokeStepLambdas"
    actions   = ["lambda:InvokeFunction"]
    resources = flatten([for arn in values(local.step_function_arns) : [arn, "${arn}:*"]])
  }
  statement {
    sid       = "RunRunnerTask"
    actions   = ["ecs:RunTask"]
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${local.runner_family}:*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.runner.arn]
    }
  }
  statement {
    # RunTraining sets PropagateTags: tagging on create needs ecs:TagResource, allowed only as part of RunTask.
    sid       = "TagRunnerTaskOnCreate"
    actions   = ["ecs:TagResource"]
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${local.ecs_cluster_name}/*"]
    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RunTask"]
    }
  }
  statement {
    sid       = "WatchAndStopRunnerTask"
    actions   = ["ecs:StopTask", "ecs:DescribeTasks"]
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${local.ecs_cluster_name}/*"]
  }
  statement {
    sid       = "PassRunnerRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.runner_execution.arn, aws_iam_role.runner_task.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
  statement {
    # runTask.sync learns that the task stopped through this managed EventBridge rule.
    sid       = "EcsTaskEventsRule"
    actions   = ["events:PutTargets", "events:PutRule", "events:DescribeRule"]
    resources = ["arn:${local.partition}:events:${local.region}:${local.account_id}:rule/StepFunctionsGetEventsForECSTaskRule"]
  }
  statement {
    # checkov:skip=CKV_AWS_111: CloudWatch Logs log delivery for Step Functions supports only Resource "*" (AWS documentation).
    # checkov:skip=CKV_AWS_356: CloudWatch Logs log delivery for Step Functions supports only Resource "*" (AWS documentation).
    sid = "DeliverExecutionLogs"
    actions = [
      "logs:CreateLogDelivery",
      "logs:GetLogDelivery",
      "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries",
      "logs:PutResourcePolicy",
      "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "state_machine" {
  name   = "state-machine"
  role   = aws_iam_role.state_machine.id
  policy = data.aws_iam_policy_document.state_machine.json
}
