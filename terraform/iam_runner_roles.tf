# The runner's two roles. Execution role: what ECS needs to start the container (image pull, logs, the three SSM
# secrets). Task role: what the runner code uses (its run's S3 prefix, the data cache, its run item) and nothing else.
# The task role trusts ECS tasks of this account only (ECS documents aws:SourceAccount for task roles); the execution
# role keeps the plain trust ECS documents for it.
data "aws_iam_policy_document" "ecs_task_role_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

data "aws_iam_policy_document" "ecs_execution_role_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "runner_execution" {
  name               = "${local.name}-runner-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_execution_role_assume.json
}

data "aws_iam_policy_document" "runner_execution" {
  statement {
    sid = "EcrAuthorizationHasNoResourceLevelPermission"
    # checkov:skip=CKV_AWS_356: ecr:GetAuthorizationToken supports only Resource "*".
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    sid       = "PullRunnerImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [aws_ecr_repository.runner.arn]
  }
  statement {
    sid       = "WriteRunnerLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.runner.arn}:log-stream:*"]
  }
  statement {
    # SecureStrings under the default aws/ssm key: its key policy lets SSM decrypt for callers in the account.
    sid       = "ReadRunnerSecrets"
    actions   = ["ssm:GetParameters"]
    resources = values(local.runner_secret_arns)
  }
}

resource "aws_iam_role_policy" "runner_execution" {
  name   = "runner-execution"
  role   = aws_iam_role.runner_execution.id
  policy = data.aws_iam_policy_document.runner_execution.json
}

resource "aws_iam_role" "runner_task" {
  name               = "${local.name}-runner-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_task_role_assume.json
}

data "aws_iam_policy_document" "runner_task" {
  statement {
    # Run ids are not known in advance, but their shape is: <run_id>/ is a uuid, matched character by character (`?`
    # is one character in IAM), so no other top-level prefix is writable. The data cache is written under its one prefix.
    sid     = "WriteRunArtifactsAndTheDataCache"
    actions = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = [
      "${aws_s3_bucket.artifacts.arn}/${local.run_id_pattern}/*",
      "${aws_s3_bucket.artifacts.arn}/${local.cache_prefix}*",
    ]
  }
  statement {
    sid       = "ReadDataCache"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.cache_prefix}*"]
  }
  statement {
    # Without ListBucket a missing key answers 403 instead of 404, and a cache miss would look like an access error.
    sid       = "MissingKeysAnswerNotFound"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]
  }
  statement {
    sid       = "UpdateRunItem"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.runs.arn]
  }
  statement {
    # The slot counter "#slots" and the quota items "#quota#..." are the admission's: a runner that could write them
    # could free slots or quota for everybody. Items whose key starts with "#" are never the runner's.
    sid       = "NotTheSlotCounterOrQuotas"
    effect    = "Deny"
    actions   = ["dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"]
    resources = [aws_dynamodb_table.runs.arn]
    condition {
      test     = "ForAnyValue:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["#*"]
    }
  }
}

resource "aws_iam_role_policy" "runner_task" {
  name   = "runner-task"
  role   = aws_iam_role.runner_task.id
  policy = data.aws_iam_policy_document.runner_task.json
}
