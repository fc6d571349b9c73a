"""Build qsim/data/fashion_mnist/fashion_mnist_13k.npz.xz from the official idx files (seeded, class-balanced)."""
import gzip, io, lzma, hashlib
import numpy as np
def idx(p):
    b = gzip.open(p).read(); nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], 'big') for i in range(nd)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)
d = '/work/shared/data/fashion-mnist/'
xtr, ytr = idx(d + 'train-images-idx3-ubyte.gz'), idx(d + 'train-labels-idx1-ubyte.gz')
xte, yte = idx(d + 't10k-images-idx3-ubyte.gz'), idx(d + 't10k-labels-idx1-ubyte.gz')
def balanced(y, per_class, seed):
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(10)]))
itr, ite = balanced(ytr, 1000, 0), balanced(yte, 300, 1)
buf = io.BytesIO()
np.savez(buf, x_train=xtr[itr], y_train=ytr[itr], x_test=xte[ite], y_test=yte[ite],
         train_index=itr.astype(np.uint16), test_index=ite.astype(np.uint16))
data = lzma.compress(buf.getvalue(), preset=9)
open(__import__("pathlib").Path(__file__).with_name("fashion_mnist_13k.npz.xz"), "wb").write(data)
print(len(data) / 1e6, 'MB', hashlib.sha256(data).hexdigest()[:16])
