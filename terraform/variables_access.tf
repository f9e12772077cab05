# Who may be emailed, how much one caller may start, and the API's backpressure levers (issue 12). They reach the app
# through outputs_access.tf and scripts/recordresources.py, like every other name.

variable "allowed_recipients" {
  type        = list(string)
  description = "Addresses (ann@example.com) and domains (example.com: any address there) the service may email (KAGENT_ALLOWED_RECIPIENTS). Empty means ses_from_email only. Anything else is refused with 400 before a run is admitted."
  default     = []

  validation {
    condition     = alltrue([for entry in var.allowed_recipients : can(regex("^([^@\\s,]+@)?[^@\\s,]+\\.[^@\\s,]+$", entry))])
    error_message = "allowed_recipients entries must be email addresses or domain names (no spaces or commas)."
  }
}

variable "ses_sandbox" {
  type        = bool
  description = "Whether this account's SES is still in its sandbox (KAGENT_SES_SANDBOX): then a recipient must also be a verified SES identity (the address or its domain). Set false once AWS granted production access."
  default     = true
}

variable "runs_per_caller_per_day" {
  type        = number
  description = "Runs one IAM caller may start per UTC day (KAGENT_RUNS_PER_CALLER_PER_DAY); more get 429 with Retry-After."
  default     = 50

  validation {
    condition     = var.runs_per_caller_per_day >= 1 && floor(var.runs_per_caller_per_day) == var.runs_per_caller_per_day
    error_message = "runs_per_caller_per_day must be a whole number of at least 1."
  }
}

variable "api_throttling_rate_limit" {
  type        = number
  description = "API Gateway stage throttling: steady requests per second across all callers (scripts/api_throttling.py applies it after chalice deploy)."
  default     = 100

  validation {
    condition     = var.api_throttling_rate_limit > 0
    error_message = "api_throttling_rate_limit must be positive."
  }
}

variable "api_throttling_burst_limit" {
  type        = number
  description = "API Gateway stage throttling: requests allowed in a burst above the rate (token bucket size)."
  default     = 200

  validation {
    condition     = var.api_throttling_burst_limit >= 1 && floor(var.api_throttling_burst_limit) == var.api_throttling_burst_limit
    error_message = "api_throttling_burst_limit must be a whole number of at least 1."
  }
}

variable "api_reserved_concurrency" {
  type        = number
  description = "Reserved concurrency of the API handler Lambda: the most requests it serves at once, and what it keeps from the account's pool for itself. 0 means none reserved (the account's unreserved pool)."
  default     = 20

  validation {
    condition     = var.api_reserved_concurrency >= 0 && floor(var.api_reserved_concurrency) == var.api_reserved_concurrency
    error_message = "api_reserved_concurrency must be a whole number of at least 0."
  }
}

locals {
  # A run id (chalicelib/runs.py: a uuid) as an IAM pattern: `?` matches exactly one character.
  run_id_pattern     = "????????-????-????-????-????????????"
  allowed_recipients = length(var.allowed_recipients) > 0 ? [for entry in var.allowed_recipients : lower(entry)] : [lower(var.ses_from_email)]
  runs_caller_index  = "runs-by-caller" # chalicelib/runs.py CALLER_INDEX; the wiring test keeps them equal
  runs_caller_index_attributes = [
    "status", "slug", "error", "cv_score", "metric", "planned_at", "running_at", "validated_at", "succeeded_at", "failed_at",
  ]
}
