# The Fargate runner: cluster, task definition and its log group. RUN_ID, URL and EMAIL arrive as container
# overrides from the state machine; the command comes from the image.
resource "aws_ecs_cluster" "runner" {
  name = local.ecs_cluster_name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "runner" {
  # checkov:skip=CKV_AWS_158: Log data is encrypted by CloudWatch Logs by default; no customer-managed KMS key is created.
  # checkov:skip=CKV_AWS_338: Run logs are also uploaded to S3 as logs.txt; a year of CloudWatch retention is not needed (log_retention_days).
  name              = local.ecs_log_group_name
  retention_in_days = var.log_retention_days
}

locals {
  # Resource names the runner reads (chalicelib/config.py); secrets come from SSM below, never from Terraform.
  runner_environment = merge(
    {
      KAGENT_STAGE             = var.stage
      KAGENT_APP_NAME          = var.chalice_app_name
      KAGENT_RUNS_TABLE        = aws_dynamodb_table.runs.name
      KAGENT_ARTIFACTS_BUCKET  = aws_s3_bucket.artifacts.bucket
      KAGENT_RUN_TIME_BUDGET_S = tostring(var.run_time_budget_s)
      KAGENT_LLM_MODEL         = var.llm_model
      KAGENT_PLAN_MODEL        = local.plan_model
      KAGENT_SANDBOX_USER      = "sandbox"
      KAGENT_TASK_CPU_UNITS    = tostring(var.runner_cpu)
      KAGENT_TASK_MEMORY_MIB   = tostring(var.runner_memory)
      # The runner plans its models for this ceiling (runner/memory.py): the task's own limit, whether or not the
      # container's cgroup shows it.
      KAGENT_MEMORY_LIMIT_MB = tostring(var.runner_memory)
    },
    var.openai_base_url != "" ? { OPENAI_BASE_URL = var.openai_base_url } : {},
  )
}

resource "aws_ecs_task_definition" "runner" {
  # checkov:skip=CKV_AWS_336: The runner unzips competitions and runs generated code in working directories it creates; a read-only root would break that. Generated code runs as the unprivileged sandbox user instead.
  family                   = local.runner_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.runner_cpu
  memory                   = var.runner_memory
  execution_role_arn       = aws_iam_role.runner_execution.arn
  task_role_arn            = aws_iam_role.runner_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.runner_architecture
  }

  ephemeral_storage {
    size_in_gib = var.runner_ephemeral_storage_gib
  }

  container_definitions = jsonencode([
    {
      name      = local.runner_container_name
      image     = local.runner_image
      essential = true
      environment = [
        for key in sort(keys(local.runner_environment)) : { name = key, value = local.runner_environment[key] }
      ]
      secrets = [
        for secret in local.runner_secret_names : { name = secret, valueFrom = local.runner_secret_arns[secret] }
      ]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.runner.name
          awslogs-region        = local.region
          awslogs-stream-prefix = local.runner_log_prefix
        }
      }
      stopTimeout = 30
    }
  ])

  lifecycle {
    precondition {
      condition     = var.track_latest != (var.runner_image_tag != "")
      error_message = "Name the runner image one way: runner_image_tag = \"<commit>\", or track_latest = true with no tag."
    }
  }
}
