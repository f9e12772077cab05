# Issue 12's half of the generated .chalice/config.json (scripts/recordresources.py): more environment for every Lambda,
# one IAM role per function, and the API's backpressure levers.

output "chalice_access_environment" {
  description = "Environment variables of every Lambda for recipients and quotas (merged into chalice_environment's by recordresources.py)."
  value = {
    KAGENT_ALLOWED_RECIPIENTS      = join(",", local.allowed_recipients)
    KAGENT_SES_SANDBOX             = tostring(var.ses_sandbox)
    KAGENT_RUNS_PER_CALLER_PER_DAY = tostring(var.runs_per_caller_per_day)
  }
}

output "lambda_function_role_arns" {
  description = "IAM role of each Chalice function (api_handler, plan, ...): Chalice lambda_functions.<name>.iam_role_arn."
  value       = merge({ api_handler = aws_iam_role.lambda.arn }, { for function, role in aws_iam_role.lambda_function : function => role.arn })
}

output "api_limits" {
  description = "API Gateway stage throttling (applied by scripts/api_throttling.py after chalice deploy) and the API handler's reserved concurrency (Chalice lambda_functions.api_handler.reserved_concurrency)."
  value = {
    throttling_rate_limit  = var.api_throttling_rate_limit
    throttling_burst_limit = var.api_throttling_burst_limit
    reserved_concurrency   = var.api_reserved_concurrency
  }
}
