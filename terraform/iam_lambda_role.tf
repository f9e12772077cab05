# The Chalice app's Lambda role, made here and handed to Chalice (manage_iam_role false, iam_role_arn in the
# generated .chalice/config.json). Every function of the app (API handler, step Lambdas, reconciler, sweeper) shares it.
data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  name               = "${local.name}-lambda"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "lambda" {
  statement {
    # Log groups are created by Terraform (aws_cloudwatch_log_group.lambda, below) with retention: no logs:CreateLogGroup.
    sid       = "WriteFunctionLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for group in aws_cloudwatch_log_group.lambda : "${group.arn}:log-stream:*"]
  }
  statement {
    # Run items and the slot counter item; transactions need the per-item actions.
    sid       = "RunStore"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.runs.arn]
  }
  statement {
    # ValidateOutput reads <run_id>/submission.csv and the sample; MarkSucceeded and GET /runs presign <run_id>/submission.csv.
    sid       = "ReadRunArtifacts"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/*"]
  }
  statement {
    # Without ListBucket a missing submission answers 403 instead of 404 (NoSuchKey).
    sid       = "MissingKeysAnswerNotFound"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]
  }
  statement {
    sid       = "NotTheDataCache"
    effect    = "Deny"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.cache_prefix}*"]
  }
  statement {
    # The sweeper lists the runs holding a slot from the sparse index, never the whole table.
    sid       = "FindRunsHoldingSlots"
    actions   = ["dynamodb:Query"]
    resources = ["${aws_dynamodb_table.runs.arn}/index/${local.runs_slot_index}"]
  }
  statement {
    # The reconciler needs nothing more: the EventBridge event carries the execution's status, error and cause.
    sid       = "StartRuns"
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.runs.arn]
  }
  statement {
    # The sweeper asks whether a run's execution ended: executions of this state machine only.
    sid       = "DescribeRunExecutions"
    actions   = ["states:DescribeExecution"]
    resources = ["arn:${local.partition}:states:${local.region}:${local.account_id}:execution:${local.state_machine_name}:*"]
  }
  statement {
    # The Plan step's Kaggle and OpenAI credentials: the runner's SecureString parameters, by ARN (KAGENT_SSM_PREFIX).
    # They use the AWS-managed aws/ssm key, whose key policy lets SSM decrypt for callers in this account, so no
    # kms:Decrypt grant is needed (a customer-managed key would need one, limited by kms:ViaService to SSM).
    sid       = "ReadPlanCredentials"
    actions   = ["ssm:GetParameters"]
    resources = values(local.runner_secret_arns)
  }
  statement {
    # In the SES sandbox the recipients' identities are checked too, so the resource is every identity and the
    # condition pins the sender.
    sid       = "SendRunEmails"
    actions   = ["ses:SendEmail", "ses:SendRawEmail"]
    resources = ["arn:${local.partition}:ses:${local.region}:${local.account_id}:identity/*"]
    condition {
      test     = "StringEquals"
      variable = "ses:FromAddress"
      values   = [var.ses_from_email]
    }
  }
}

resource "aws_iam_role_policy" "lambda" {
  name   = "chalice-app"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda.json
}

resource "aws_cloudwatch_log_group" "lambda" {
  # checkov:skip=CKV_AWS_158: Log data is encrypted by CloudWatch Logs by default; no customer-managed KMS key is created.
  # checkov:skip=CKV_AWS_338: Operational logs for debugging runs; a year of retention is not needed (log_retention_days).
  for_each          = toset(local.all_lambda_names)
  name              = "/aws/lambda/${each.value}"
  retention_in_days = var.log_retention_days
}
