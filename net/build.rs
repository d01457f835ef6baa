// Embeds the git commit as WARREN_GIT_COMMIT (see build_git.rs at the workspace root).

include!("../build_git.rs");

fn main() {
    emit_git_commit(&manifest_dir());
}
