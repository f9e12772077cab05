variable "project" {
  type        = string
  description = "Prefix of every resource name (<project>-<stage>-...) and of the SSM parameter path /<project>/<stage>. Two stages in one account share it: names differ by stage."
  default     = "kagent"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.project))
    error_message = "project must be 2-21 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "stage" {
  type        = string
  description = "Deployment stage; the Chalice stage of the same name (chalice deploy --stage <stage>) gets this stage's config."
  default     = "dev"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,15}$", var.stage)) && var.stage != "local"
    error_message = "stage must be 2-16 lowercase letters or digits, and not \"local\" (that stage is the offline one)."
  }
}

variable "region" {
  type        = string
  description = "AWS region for every resource."
  default     = "eu-west-1"
}

variable "chalice_app_name" {
  type        = string
  description = "Chalice app_name; Lambda names follow Chalice's {app}-{stage}-{function}."
  default     = "kagent"
}

variable "runner_image_tag" {
  type        = string
  description = "Tag of the runner image in the ECR repository: the short commit it was built from (git rev-parse --short=12 HEAD). Tags are immutable: a new build gets a new tag. Leave empty with track_latest = true."
  default     = ""

  validation {
    condition     = var.runner_image_tag == "" || (can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.runner_image_tag)) && var.runner_image_tag != "latest")
    error_message = "runner_image_tag must be a valid Docker tag other than \"latest\" (the repository's tags are immutable), or empty with track_latest = true."
  }
}

variable "track_latest" {
  type        = bool
  description = "Point the task definition at the newest image pushed to the repository (pinned by digest) instead of runner_image_tag; every apply then picks up the latest push, and the drift check shows a newer one as a change."
  default     = false
}

variable "runner_cpu" {
  type        = number
  description = "Fargate CPU units of the runner task."
  default     = 1024
}

variable "runner_memory" {
  type        = number
  description = "Fargate memory (MiB) of the runner task."
  default     = 2048
}

variable "runner_architecture" {
  type        = string
  description = "CPU architecture of the runner task; the pushed image must contain it (docker buildx --platform)."
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.runner_architecture)
    error_message = "runner_architecture must be X86_64 or ARM64."
  }
}

variable "runner_ephemeral_storage_gib" {
  type        = number
  description = "Task ephemeral storage (GiB) for the competition download, unzip and artifacts."
  default     = 30

  validation {
    condition     = var.runner_ephemeral_storage_gib >= 21 && var.runner_ephemeral_storage_gib <= 200
    error_message = "runner_ephemeral_storage_gib must be between 21 and 200."
  }
}

variable "runner_egress_ports" {
  type        = list(number)
  description = "TCP ports the runner may reach on the internet (Kaggle, the OpenAI-compatible API and AWS endpoints all use 443)."
  default     = [443]
}

variable "subnet_ids" {
  type        = list(string)
  description = "Subnets for the runner task; empty means the default VPC's subnets. Subnets without a NAT gateway need a public IP on the task."
  default     = []
}

variable "vpc_id" {
  type        = string
  description = "VPC of subnet_ids; empty means the default VPC."
  default     = ""
}

variable "ses_from_email" {
  type        = string
  description = "Sender address of the run emails; Terraform creates the SES identity and AWS mails it a verification link."

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.ses_from_email))
    error_message = "ses_from_email must be an email address."
  }
}

variable "manage_ses_identity" {
  type        = bool
  description = "Create (and on destroy delete) the SES identity of ses_from_email. Set false in a second stage that sends from the same address as the first."
  default     = true
}

variable "alarm_email" {
  type        = string
  description = "Address subscribed to the alarm topic (it must confirm the subscription email)."

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be an email address."
  }
}

variable "max_running" {
  type        = number
  description = "Runs in flight at once (KAGENT_MAX_RUNNING); more requests get 429."
  default     = 2

  validation {
    condition     = var.max_running >= 1
    error_message = "max_running must be at least 1."
  }
}

variable "presign_expiry_s" {
  type        = number
  description = "Lifetime in seconds of the presigned submission link (KAGENT_PRESIGN_EXPIRY_S). A link signed with the Lambda's temporary credentials dies with them anyway, so keep it short; GET /runs/{id} signs a fresh one."
  default     = 3600

  validation {
    condition     = var.presign_expiry_s >= 60 && var.presign_expiry_s <= 43200
    error_message = "presign_expiry_s must be between 60 and 43200 (links signed with temporary credentials cannot outlive them)."
  }
}

variable "run_time_budget_s" {
  type        = number
  description = "Training time budget of one run in seconds (KAGENT_RUN_TIME_BUDGET_S); the state machine's timeout is derived from it."
  default     = 1800

  validation {
    condition     = var.run_time_budget_s >= 60
    error_message = "run_time_budget_s must be at least 60."
  }
}

variable "llm_model" {
  type        = string
  description = "Model name for code generation (KAGENT_LLM_MODEL)."
  default     = "gpt-5-mini"
}

variable "plan_model" {
  type        = string
  description = "Model name for planning (KAGENT_PLAN_MODEL); empty means llm_model."
  default     = ""
}

variable "openai_base_url" {
  type        = string
  description = "OPENAI_BASE_URL for an OpenAI-compatible server other than OpenAI; empty means the SDK default."
  default     = ""
}

variable "ssm_parameter_prefix" {
  type        = string
  description = "Path prefix of the SecureString parameters OPENAI_API_KEY, KAGGLE_USERNAME and KAGGLE_KEY (created outside Terraform). Empty means /<project>/<stage>."
  default     = ""
}

variable "artifact_retention_days" {
  type        = number
  description = "Days before run artifacts (and the data cache) expire from the bucket."
  default     = 30

  validation {
    condition     = var.artifact_retention_days >= 1
    error_message = "artifact_retention_days must be at least 1."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the Lambda, ECS and Step Functions log groups."
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

variable "ecr_keep_images" {
  type        = number
  description = "Runner images kept in ECR; older ones are expired."
  default     = 20
}

variable "allow_destroy_with_data" {
  type        = bool
  description = "Let terraform destroy remove the artifacts bucket and the ECR repository while they still hold objects and images (teardown only)."
  default     = false
}
