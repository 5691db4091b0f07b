"""edgeship.targets: reaching a board over SSH and reading what it answers. Shared by `bench --target` and
`gate --target` (bench and export, which never import each other); the board side is edgeship.runtime."""
