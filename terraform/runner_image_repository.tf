# The runner image: every build is pushed under the commit it was built from (git rev-parse --short=12 HEAD) and the
# task definition names that tag (runner_image_tag), or, with track_latest, the newest image pushed (README, deploy).
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

# track_latest: the newest image in the repository, read at every plan (so a push shows up as a change to apply). By
# name, not by reference, so that it is read at plan time: the repository must exist and hold an image (the first
# apply of a stage names a tag).
data "aws_ecr_image" "newest" {
  count           = var.track_latest ? 1 : 0
  repository_name = local.ecr_repository_name
  most_recent     = true
}
