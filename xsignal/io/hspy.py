def is_hspy(handle):
    return False


read_hspy = None
