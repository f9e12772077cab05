# One IAM role per function of the Chalice app, made here and handed to Chalice (manage_iam_role false; the stage's
# iam_role_arn is the API handler's role, and lambda_functions.<name>.iam_role_arn names each function's own; see
# scripts/recordresources.py). Each role allows what its function's code calls and nothing else:
# tests/test_iam_per_function.py records the AWS calls every handler makes under moto and checks them against the
# policy documents below, both ways.
data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

locals {
  # Chalice's function name (the key under lambda_functions in .chalice/config.json) -> the deployed Lambda's name.
  lambda_functions = {
    api_handler     = local.lambda_prefix
    plan            = "${local.lambda_prefix}-plan"
    validate_output = "${local.lambda_prefix}-validate_output"
    mark_succeeded  = "${local.lambda_prefix}-mark_succeeded"
    mark_failed     = "${local.lambda_prefix}-mark_failed"
    reconcile       = "${local.lambda_prefix}-reconcile"
    sweep           = "${local.lambda_prefix}-sweep"
  }
  # Every function but the API handler (whose role is aws_iam_role.lambda, the stage's default) gets its own role.
  lambda_function_policies = {
    plan            = data.aws_iam_policy_document.lambda_plan.json
    validate_output = data.aws_iam_policy_document.lambda_validate_output.json
    mark_succeeded  = data.aws_iam_policy_document.lambda_mark_succeeded.json
    mark_failed     = data.aws_iam_policy_document.lambda_mark_failed.json
    reconcile       = data.aws_iam_policy_document.lambda_reconcile.json
    sweep           = data.aws_iam_policy_document.lambda_sweep.json
  }
  lambda_log_streams   = { for function, name in local.lambda_functions : function => "${aws_cloudwatch_log_group.lambda[name].arn}:log-stream:*" }
  run_executions_arn   = "arn:${local.partition}:states:${local.region}:${local.account_id}:execution:${local.state_machine_name}:*"
  ses_identities_arn   = "arn:${local.partition}:ses:${local.region}:${local.account_id}:identity/*"
  run_artifact_objects = "${aws_s3_bucket.artifacts.arn}/*"
  data_cache_objects   = "${aws_s3_bucket.artifacts.arn}/${local.cache_prefix}*"
}

# --- the API handler: POST /run, GET /runs, GET and DELETE /runs/{id} ----------------------------------------------

resource "aws_iam_role" "lambda" {
  name               = "${local.name}-api"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "lambda_api_handler" {
  statement {
    # Log groups are created by Terraform (below) with retention, so no logs:CreateLogGroup anywhere.
    sid       = "WriteFunctionLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.lambda_log_streams["api_handler"]]
  }
  statement {
    # Admission is one transaction (slot counter, quota item, new run item); GET reads a run; DELETE fails it.
    sid       = "RunStore"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.runs.arn]
  }
  statement {
    sid       = "ListCallersRuns"
    actions   = ["dynamodb:Query"]
    resources = ["${aws_dynamodb_table.runs.arn}/index/${local.runs_caller_index}"]
  }
  statement {
    sid       = "StartRuns"
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.runs.arn]
  }
  statement {
    sid       = "CancelRuns"
    actions   = ["states:StopExecution"]
    resources = [local.run_executions_arn]
  }
  statement {
    # GET /runs/{id} presigns <run_id>/submission.csv: the link works with this role's s3:GetObject.
    sid       = "PresignRunArtifacts"
    actions   = ["s3:GetObject"]
    resources = [local.run_artifact_objects]
  }
  statement {
    sid       = "NotTheDataCache"
    effect    = "Deny"
    actions   = ["s3:GetObject"]
    resources = [local.data_cache_objects]
  }
  statement {
    # In the SES sandbox (var.ses_sandbox) a recipient must be a verified identity: a read-only lookup. SES has no
    # resource-level permission for it, and this role sends no email.
    # checkov:skip=CKV_AWS_356: ses:GetIdentityVerificationAttributes supports only Resource "*".
    sid       = "CheckRecipientsAreVerified"
    actions   = ["ses:GetIdentityVerificationAttributes"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "lambda" {
  name   = "kagent-api_handler"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda_api_handler.json
}

# --- the step Lambdas, the reconciler and the sweeper ----------------------------------------------------------------

resource "aws_iam_role" "lambda_function" {
  for_each           = local.lambda_function_policies
  name               = "${local.name}-${replace(each.key, "_", "-")}"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "lambda_function" {
  for_each = local.lambda_function_policies
  name     = "kagent-${each.key}"
  role     = aws_iam_role.lambda_function[each.key].id
  policy   = each.value
}

data "aws_iam_policy_document" "lambda_plan" {
  statement {
    sid       = "WriteFunctionLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.lambda_log_streams["plan"]]
  }
  statement {
    sid       = "RunStore"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.runs.arn]
  }
  statement {
    # The Plan step's Kaggle and OpenAI credentials: the runner's SecureString parameters, by ARN (KAGENT_SSM_PREFIX).
    # They use the AWS-managed aws/ssm key, whose key policy lets SSM decrypt for callers in this account, so no
    # kms:Decrypt grant is needed (a customer-managed key would need one, limited by kms:ViaService to SSM).
    sid       = "ReadPlanCredentials"
    actions   = ["ssm:GetParameters"]
    resources = values(local.runner_secret_arns)
  }
}

data "aws_iam_policy_document" "lambda_validate_output" {
  statement {
    sid       = "WriteFunctionLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.lambda_log_streams["validate_output"]]
  }
  statement {
    sid       = "RunStore"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.runs.arn]
  }
  statement {
    # <run_id>/submission.csv, the sample and result.json.
    sid       = "ReadRunArtifacts"
    actions   = ["s3:GetObject"]
    resources = [local.run_artifact_objects]
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
    resources = [local.data_cache_objects]
  }
}

data "aws_iam_policy_document" "lambda_mark_succeeded" {
  statement {
    sid       = "WriteFunctionLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.lambda_log_streams["mark_succeeded"]]
  }
  statement {
    # The terminal transition gives the slot back in the same transaction.
    sid       = "RunStore"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.runs.arn]
  }
  statement {
    # The email's presigned link to <run_id>/submission.csv.
    sid       = "PresignRunArtifacts"
    actions   = ["s3:GetObject"]
    resources = [local.run_artifact_objects]
  }
  statement {
    sid       = "NotTheDataCache"
    effect    = "Deny"
    actions   = ["s3:GetObject"]
    resources = [local.data_cache_objects]
  }
  statement {
    # In the SES sandbox the recipients' identities are checked too, so the resource is every identity and the
    # condition pins the sender. The success email is raw MIME when it carries the CV chart inline.
    sid       = "SendRunEmails"
    actions   = ["ses:SendEmail", "ses:SendRawEmail"]
    resources = [local.ses_identities_arn]
    condition {
      test     = "StringEquals"
      variable = "ses:FromAddress"
      values   = [var.ses_from_email]
    }
  }
}

data "aws_iam_policy_document" "lambda_mark_failed" {
  statement {
    sid       = "WriteFunctionLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.lambda_log_streams["mark_failed"]]
  }
  statement {
    sid       = "RunStore"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.runs.arn]
  }
  statement {
    sid       = "SendRunEmails"
    actions   = ["ses:SendEmail"]
    resources = [local.ses_identities_arn]
    condition {
      test     = "StringEquals"
      variable = "ses:FromAddress"
      values   = [var.ses_from_email]
    }
  }
}

data "aws_iam_policy_document" "lambda_reconcile" {
  statement {
    sid       = "WriteFunctionLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.lambda_log_streams["reconcile"]]
  }
  statement {
    # The EventBridge event carries the execution's status, error and cause: no Step Functions call is needed.
    sid       = "RunStore"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.runs.arn]
  }
  statement {
    # The failure email of a run whose execution ended badly (a cancelled run's included).
    sid       = "SendRunEmails"
    actions   = ["ses:SendEmail"]
    resources = [local.ses_identities_arn]
    condition {
      test     = "StringEquals"
      variable = "ses:FromAddress"
      values   = [var.ses_from_email]
    }
  }
}

data "aws_iam_policy_document" "lambda_sweep" {
  statement {
    sid       = "WriteFunctionLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [local.lambda_log_streams["sweep"]]
  }
  statement {
    sid       = "RunStore"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.runs.arn]
  }
  statement {
    # The sweeper lists the runs holding a slot from the sparse index, never the whole table.
    sid       = "FindRunsHoldingSlots"
    actions   = ["dynamodb:Query"]
    resources = ["${aws_dynamodb_table.runs.arn}/index/${local.runs_slot_index}"]
  }
  statement {
    # Whether a run's execution ended: executions of this state machine only.
    sid       = "DescribeRunExecutions"
    actions   = ["states:DescribeExecution"]
    resources = [local.run_executions_arn]
  }
  statement {
    sid       = "SendRunEmails"
    actions   = ["ses:SendEmail"]
    resources = [local.ses_identities_arn]
    condition {
      test     = "StringEquals"
      variable = "ses:FromAddress"
      values   = [var.ses_from_email]
    }
  }
}

resource "aws_cloudwatch_log_group" "lambda" {
  # checkov:skip=CKV_AWS_158: Log data is encrypted by CloudWatch Logs by default; no customer-managed KMS key is created.
  # checkov:skip=CKV_AWS_338: Operational logs for debugging runs; a year of retention is not needed (log_retention_days).
  for_each          = toset(local.all_lambda_names)
  name              = "/aws/lambda/${each.value}"
  retention_in_days = var.log_retention_days
}
