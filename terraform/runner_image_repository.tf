# The runner image: push tag N with docker buildx, then apply with -var runner_image_tag=N (README, section deploy).
resource "aws_ecr_repository" "runner" {
  # checkov:skip=CKV_AWS_136: Images are encrypted with AES256; no customer-managed KMS key is created (cost and key-policy upkeep).
  name                 = local.ecr_repository_name
  image_tag_mutability = "IMMUTABLE"
  force_delete         = var.allow_destroy_with_data

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "AES256"
  }
}

resource "aws_ecr_lifecycle_policy" "runner" {
  repository = aws_ecr_repository.runner.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the newest ${var.ecr_keep_images} runner images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = var.ecr_keep_images
      }
      action = { type = "expire" }
    }]
  })
}
