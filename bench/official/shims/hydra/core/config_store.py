class ConfigStore:
    _inst = None
    def __init__(self):
        self.repo = {}
    @classmethod
    def instance(cls):
        if cls._inst is None:
            cls._inst = ConfigStore()
        return cls._inst
    def store(self, name, node, group=None, package=None, provider=None):
        self.repo[(group, name)] = node
