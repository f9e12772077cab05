# scripts/recordresources.py turns `terraform output -json` into this stage's entry in .chalice/config.json:
# chalice_environment becomes its environment_variables and lambda_role_arn its iam_role_arn. Names cross from
# Terraform to the app only through these outputs.

output "stage" {
  description = "The Chalice stage these resources belong to (chalice deploy --stage <stage>)."
  value       = var.stage
}

output "chalice_app_name" {
  description = "Chalice app_name the Lambda names and ARNs were derived from."
  value       = var.chalice_app_name
}

output "chalice_environment" {
  description = "Environment variables of every Lambda of the Chalice app for this stage (names from chalicelib/config.py)."
  value = {
    KAGENT_STAGE             = var.stage
    KAGENT_APP_NAME          = var.chalice_app_name
    KAGENT_RUNS_TABLE        = aws_dynamodb_table.runs.name
    KAGENT_ARTIFACTS_BUCKET  = aws_s3_bucket.artifacts.bucket
    KAGENT_STATE_MACHINE_ARN = aws_sfn_state_machine.runs.arn
    KAGENT_ECS_CLUSTER       = aws_ecs_cluster.runner.arn
    KAGENT_TASK_DEFINITION   = aws_ecs_task_definition.runner.arn
    KAGENT_SUBNETS           = join(",", local.runner_subnet_ids)
    KAGENT_SECURITY_GROUP    = aws_security_group.runner.id
    KAGENT_SES_SENDER        = var.ses_from_email
    KAGENT_MAX_RUNNING       = tostring(var.max_running)
    KAGENT_PRESIGN_EXPIRY_S  = tostring(var.presign_expiry_s)
    KAGENT_RUN_TIME_BUDGET_S = tostring(var.run_time_budget_s)
    KAGENT_EXECUTOR          = "stepfunctions"
    KAGENT_OUTBOX            = ""
    KAGENT_DATA_MIRROR       = ""
    KAGENT_LLM_MODEL         = var.llm_model
    KAGENT_PLAN_MODEL        = local.plan_model
    KAGENT_SSM_PREFIX        = local.ssm_parameter_prefix
  }
}

output "lambda_role_arn" {
  description = "IAM role of the Chalice app's Lambdas (Chalice: manage_iam_role false, iam_role_arn)."
  value       = aws_iam_role.lambda.arn
}

output "region" {
  description = "Region of every resource; chalice deploy must use the same one (export AWS_DEFAULT_REGION=<this>)."
  value       = local.region
}

output "state_machine_arn" {
  description = "ARN of the run state machine."
  value       = aws_sfn_state_machine.runs.arn
}

output "ecs_cluster_arn" {
  description = "ARN of the ECS cluster the runner task runs in."
  value       = aws_ecs_cluster.runner.arn
}

output "ecs_task_definition_arn" {
  description = "ARN (with revision) of the runner task definition."
  value       = aws_ecs_task_definition.runner.arn
}

output "runner_image" {
  description = "The runner image the task definition uses (repository URL and tag)."
  value       = local.runner_image
}

output "ecr_repository_url" {
  description = "ECR repository to push runner images to (docker buildx ... --tag <url>:<tag> --push)."
  value       = aws_ecr_repository.runner.repository_url
}

output "runs_table_name" {
  description = "DynamoDB runs table."
  value       = aws_dynamodb_table.runs.name
}

output "artifacts_bucket_name" {
  description = "S3 bucket of run artifacts (<run_id>/) and the data cache (data-cache/<slug>/)."
  value       = aws_s3_bucket.artifacts.bucket
}

output "runner_subnet_ids" {
  description = "Subnets the runner task runs in."
  value       = local.runner_subnet_ids
}

output "runner_security_group_id" {
  description = "Security group of the runner task (egress only)."
  value       = aws_security_group.runner.id
}

output "runner_log_group" {
  description = "CloudWatch log group of the runner task, one per stage (streams runner/runner/<task id>)."
  value       = aws_cloudwatch_log_group.runner.name
}

output "state_machine_log_group" {
  description = "CloudWatch log group of the state machine (errors only)."
  value       = aws_cloudwatch_log_group.state_machine.name
}

output "ssm_parameter_names" {
  description = "SecureString parameters the runner reads (create them before the first run; values never pass through Terraform)."
  value       = { for secret in local.runner_secret_names : secret => "${local.ssm_parameter_prefix}/${secret}" }
}

output "ssm_parameter_prefix" {
  description = "Path of the SecureString parameters (put them as <prefix>/OPENAI_API_KEY, <prefix>/KAGGLE_USERNAME, <prefix>/KAGGLE_KEY)."
  value       = local.ssm_parameter_prefix
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms."
  value       = aws_sns_topic.alarms.arn
}
