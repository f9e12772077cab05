# Where the runner task runs: the given subnets, or the default VPC's. The app passes KAGENT_SUBNETS and
# KAGENT_SECURITY_GROUP into each execution's input; the state machine hands them to ecs:RunTask.
data "aws_vpc" "default" {
  count   = var.vpc_id == "" ? 1 : 0
  default = true
}

data "aws_subnets" "default" {
  count = length(var.subnet_ids) == 0 ? 1 : 0
  filter {
    name   = "vpc-id"
    values = [local.vpc_id]
  }
  filter {
    name   = "default-for-az"
    values = ["true"]
  }
}

locals {
  vpc_id            = var.vpc_id != "" ? var.vpc_id : data.aws_vpc.default[0].id
  runner_subnet_ids = length(var.subnet_ids) > 0 ? var.subnet_ids : sort(data.aws_subnets.default[0].ids)
}

resource "aws_security_group" "runner" {
  # checkov:skip=CKV2_AWS_5: Attached at run time: the app puts this group into each execution's network configuration for ecs:RunTask.
  name        = "${local.name}-runner"
  description = "kagent runner task: no inbound, HTTPS out (Kaggle, the LLM API, AWS endpoints)"
  vpc_id      = local.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "runner" {
  for_each          = toset([for port in var.runner_egress_ports : tostring(port)])
  security_group_id = aws_security_group.runner.id
  description       = "Runner egress on TCP ${each.value}"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.value)
  to_port           = tonumber(each.value)
  cidr_ipv4         = "0.0.0.0/0"
}
