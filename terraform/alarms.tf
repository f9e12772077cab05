# Alarms to one SNS topic with the alarm email: Lambda errors, failed runner tasks, failed/timed-out/aborted executions
# (one message per execution, naming its ARN, plus the per-metric alarms).
resource "aws_sns_topic" "alarms" {
  # checkov:skip=CKV_AWS_26: CloudWatch alarms cannot publish to a topic under the AWS-managed aws/sns key, and no customer-managed KMS key is created; alarm messages hold no run data.
  name = "${local.name}-alarms"
}

resource "aws_sns_topic_subscription" "alarm_email" {
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  for_each            = toset(local.all_lambda_names)
  alarm_name          = "${each.value}-errors"
  alarm_description   = "Lambda ${each.value} raised errors (logs: /aws/lambda/${each.value})."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

# A failed runner task (non-zero exit, or it never started: image pull, SSM secret, capacity) goes straight to the topic.
resource "aws_cloudwatch_event_rule" "runner_task_failed" {
  name        = "${local.name}-runner-task-failed"
  description = "kagent runner task stopped with a non-zero exit code or failed to start (logs: ${local.ecs_log_group_name})"
  event_pattern = jsonencode({
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Task State Change"]
    detail = {
      clusterArn        = [aws_ecs_cluster.runner.arn]
      taskDefinitionArn = [{ prefix = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${local.runner_family}:" }]
      lastStatus        = ["STOPPED"]
      "$or" = [
        { containers = { exitCode = [{ "anything-but" = 0 }] } },
        { stopCode = ["TaskFailedToStart"] },
      ]
    }
  })
}

resource "aws_cloudwatch_event_target" "runner_task_failed" {
  rule = aws_cloudwatch_event_rule.runner_task_failed.name
  arn  = aws_sns_topic.alarms.arn
  input_transformer {
    input_paths = {
      task   = "$.detail.taskArn"
      reason = "$.detail.stoppedReason"
      code   = "$.detail.stopCode"
    }
    input_template = "\"kagent runner task <task> failed (<code>): <reason>. Logs: ${local.ecs_log_group_name}\""
  }
}

# A workflow that ends badly mails its execution ARN (a CloudWatch alarm can only say that some execution failed).
resource "aws_cloudwatch_event_rule" "execution_ended_badly" {
  name        = "${local.name}-execution-ended-badly"
  description = "kagent run workflow ${local.state_machine_name} failed, timed out or was aborted"
  event_pattern = jsonencode({
    source        = ["aws.states"]
    "detail-type" = ["Step Functions Execution Status Change"]
    detail = {
      stateMachineArn = [aws_sfn_state_machine.runs.arn]
      status          = ["FAILED", "TIMED_OUT", "ABORTED"]
    }
  })
}

resource "aws_cloudwatch_event_target" "execution_ended_badly" {
  rule = aws_cloudwatch_event_rule.execution_ended_badly.name
  arn  = aws_sns_topic.alarms.arn
  input_transformer {
    input_paths = {
      execution = "$.detail.executionArn"
      status    = "$.detail.status"
      run       = "$.detail.name"
    }
    input_template = "\"kagent run <run>: workflow execution <execution> ended <status>. History: aws stepfunctions get-execution-history --execution-arn <execution> --reverse-order --max-items 10\""
  }
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    sid     = "AccountOwnsTheTopic"
    actions = ["sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:Subscribe", "sns:ListSubscriptionsByTopic", "sns:Publish"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
    resources = [aws_sns_topic.alarms.arn]
  }
  statement {
    sid     = "CloudWatchAlarmsPublish"
    actions = ["sns:Publish"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    resources = [aws_sns_topic.alarms.arn]
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
  statement {
    sid     = "FailureRulesPublish"
    actions = ["sns:Publish"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    resources = [aws_sns_topic.alarms.arn]
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.runner_task_failed.arn, aws_cloudwatch_event_rule.execution_ended_badly.arn]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

resource "aws_cloudwatch_metric_alarm" "executions_ended_badly" {
  for_each            = toset(["ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"])
  alarm_name          = "${local.name}-${lower(each.value)}"
  alarm_description   = "State machine ${local.state_machine_name}: ${each.value} (see its execution history)."
  namespace           = "AWS/States"
  metric_name         = each.value
  dimensions          = { StateMachineArn = aws_sfn_state_machine.runs.arn }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}
