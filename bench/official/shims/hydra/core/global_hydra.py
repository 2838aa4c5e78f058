class GlobalHydra:
    _inst = None
    @classmethod
    def instance(cls):
        if cls._inst is None:
            cls._inst = GlobalHydra()
        return cls._inst
    def clear(self):
        pass
