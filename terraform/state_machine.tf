# The run pipeline: statemachine.asl.json (repo root) rendered with the ARNs it needs. The network configuration is
# not rendered here: each execution's input carries it (the app builds it from KAGENT_SUBNETS/KAGENT_SECURITY_GROUP).
resource "aws_cloudwatch_log_group" "state_machine" {
  # checkov:skip=CKV_AWS_158: Log data is encrypted by CloudWatch Logs by default; no customer-managed KMS key is created.
  # checkov:skip=CKV_AWS_338: Operational logs; the execution history is the primary record (log_retention_days).
  name              = local.states_log_group_name
  retention_in_days = var.log_retention_days
}

locals {
  state_machine_definition = templatefile("${path.module}/../statemachine.asl.json", {
    plan_function_arn            = local.step_function_arns.plan
    validate_output_function_arn = local.step_function_arns.validate_output
    mark_succeeded_function_arn  = local.step_function_arns.mark_succeeded
    mark_failed_function_arn     = local.step_function_arns.mark_failed
    ecs_cluster_arn              = aws_ecs_cluster.runner.arn
    runner_task_definition_arn   = aws_ecs_task_definition.runner.arn
    runner_container_name        = local.runner_container_name
  })
}

resource "aws_sfn_state_machine" "runs" {
  # checkov:skip=CKV_AWS_285: Execution data is kept out of the logs on purpose: run inputs carry the user's email address. The execution history in the console still shows it to operators.
  # checkov:skip=CKV_AWS_284: X-Ray tracing is off: its write actions support only Resource "*", and the execution history plus logs cover the runbook.
  name       = local.state_machine_name
  role_arn   = aws_iam_role.state_machine.arn
  definition = local.state_machine_definition

  logging_configuration {
    # ERROR only and without execution data: inputs carry the user's email address.
    log_destination        = "${aws_cloudwatch_log_group.state_machine.arn}:*"
    include_execution_data = false
    level                  = "ERROR"
  }

  depends_on = [aws_iam_role_policy.state_machine]
}
