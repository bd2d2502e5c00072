"""placeholder"""
def main_backup(argv: list[str]) -> int:
    return 2
def main_restore(argv: list[str]) -> int:
    return 2
