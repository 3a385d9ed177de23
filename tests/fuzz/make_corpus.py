#!/usr/bin/python3
"""Writes the small seed corpora of the fuzz targets into tests/fuzz/corpus/<name>/.

usage: make_corpus.py [NAME ...]    (default: every generated corpus)

Seeds are tiny valid files of each format (a few KB at most), written the way the
real producers write them (numpy for .npy, the safetensors layout, store records as
store/record.c lays them out, gzip'd IDX like Fashion-MNIST's, the release text
formats like tests/fixtures/make_fixtures.py), plus a few near-misses. The fuzzer
then mutates them; everything it finds interesting goes to build/fuzz/new/<name>.
"""
import gzip
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
SEP = b'\n#~~#\n'  # tests/fuzz/fuzz_util.h FUZZ_SEP


def out_dir(name):
    d = os.path.join(HERE, 'corpus', name)
    os.makedirs(d, exist_ok=True)
    return d


def put(name, fname, data):
    with open(os.path.join(out_dir(name), fname), 'wb') as f:
        f.write(data)


def npy_bytes(a, version=None):
    b = io.BytesIO()
    np.lib.format.write_array(b, a, version=version, allow_pickle=False)
    return b.getvalue()


def corpus_npy():
    r = np.random.RandomState(0)
    put('npy', 'f4_2x3.npy', npy_bytes(r.rand(2, 3).astype('<f4')))
    put('npy', 'f8_scalar.npy', npy_bytes(np.array(3.5)))
    put('npy', 'i1_labels.npy', npy_bytes(np.array([[1, -1, 0], [0, 1, -1]], dtype='i1')))
    put('npy', 'u1_3d.npy', npy_bytes(r.randint(0, 255, (2, 2, 3)).astype('u1')))
    put('npy', 'i8_v2.npy', npy_bytes(np.arange(5, dtype='<i8'), version=(2, 0)))
    put('npy', 'i4.npy', npy_bytes(np.arange(-3, 3, dtype='<i4')))
    put('npy', 'b1.npy', npy_bytes(np.array([True, False, True])))
    put('npy', 'f2.npy', npy_bytes(np.array([1.5, -2, 65504], dtype='<f2')))
    put('npy', 'str.npy', npy_bytes(np.array(['Flickr/café/über.jpg', 'a/b.jpg'])))
    put('npy', 'empty_0x4.npy', npy_bytes(np.zeros((0, 4), dtype='<f4')))
    put('npy', 'fortran.npy', npy_bytes(np.asfortranarray(np.ones((2, 3), dtype='<f4'))))
    bad = bytearray(npy_bytes(np.ones(3, dtype='<f4')))
    put('npy', 'truncated.npy', bytes(bad[:-2]))


def st_bytes(tensors, metadata=None):
    header, data = {}, b''
    if metadata is not None:
        header['__metadata__'] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {'dtype': dtype, 'shape': list(shape),
                        'data_offsets': [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    return struct.pack('<Q', len(h)) + h + data


def corpus_safetensors():
    r = np.random.RandomState(1)
    f32 = r.randn(2, 3).astype('<f4')
    put('safetensors', 'f32.safetensors',
        st_bytes({'fc.weight': ('F32', (2, 3), f32.tobytes())}, {'format': 'wsml', 'epoch': '3'}))
    put('safetensors', 'mixed.safetensors', st_bytes({
        'a': ('F16', (4,), np.array([1, -2, 0.5, 65504], dtype='<f2').tobytes()),
        'b': ('BF16', (2,), np.array([0x3f80, 0xc000], dtype='<u2').tobytes()),
        'c': ('I64', (2, 2), np.arange(4, dtype='<i8').tobytes()),
        'd': ('U8', (3,), b'\x01\x02\x03'),
        'e': ('F64', (1,), np.array([2.25]).tobytes()),
        'f': ('BOOL', (2,), b'\x00\x01'),
        'g': ('I32', (0,), b''),
        'h': ('I8', (), b'\xff')}))
    put('safetensors', 'label_state.safetensors', st_bytes(
        {'label_state.flips': ('I64', (2, 2), np.array([[0, 3], [5, 1]], dtype='<i8').tobytes())},
        {'epoch': '2', 'loss': 'll-cp'}))
    good = st_bytes({'x': ('F32', (2,), b'\0' * 8), 'y': ('F32', (1,), b'\0' * 4)})
    put('safetensors', 'truncated.safetensors', good[:-3])
    # overlapping tensors
    h = json.dumps({'x': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]},
                    'y': {'dtype': 'F32', 'shape': [1], 'data_offsets': [4, 8]}}).encode()
    put('safetensors', 'overlap.safetensors', struct.pack('<Q', len(h)) + h + b'\0' * 8)


def record_bytes(rid, full, obs, image, enc=0, shape=(2, 2, 3), default=0):
    """store/record.c layout; full/obs dense lists of 1/0/-1."""
    other = -1 if default == 0 else 0
    fp = [c for c, v in enumerate(full) if v == 1]
    fo = [c for c, v in enumerate(full) if v == other]
    op = [c for c, v in enumerate(obs) if v == 1]
    on = [c for c, v in enumerate(obs) if v == -1]
    rid = rid.encode()
    h, w = shape[0], shape[1]
    b = b'WSR1' + bytes([enc, shape[2]]) + struct.pack('<HH', h, w)
    b += bytes([0 if default == 0 else 0xff, 0])
    b += struct.pack('<6I', len(rid), len(fp), len(fo), len(op), len(on), len(image))
    b += rid + b''.join(struct.pack('<I', c) for c in fp + fo + op + on) + image
    return b + struct.pack('<I', zlib.crc32(b) & 0xffffffff)


def jpeg_bytes(h, w, mode='RGB', fmt='JPEG', **kw):
    r = np.random.RandomState(h * 100 + w)
    a = r.randint(0, 255, (h, w, 3)).astype(np.uint8)
    im = Image.fromarray(a, 'RGB')
    if mode != 'RGB':
        im = im.convert(mode)
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def corpus_record():
    raw = bytes(range(12))
    put('record', 'raw.rec', record_bytes('2008_000015.jpg', [1, 0, -1, 0, 1], [1, 0, 0, -1, 0], raw))
    put('record', 'jpeg.rec', record_bytes('coco/COCO_val2014_000000000042.jpg', [0, 1, 0], [0, 1, 0],
                                           jpeg_bytes(8, 8, quality=50), enc=1, shape=(8, 8, 3)))
    put('record', 'openimages.rec', record_bytes('images_train/000a1249af2bc5f0.jpg',
                                                 [-1, 1, 0, -1, -1, 0], [0, 1, -1, 0, 0, -1], raw,
                                                 default=-1))
    put('record', 'nolabels.rec', record_bytes('x', [0, 0], [0, 0], b'\x07' * 3, shape=(1, 1, 3)))
    bad = bytearray(record_bytes('flip', [1, 0], [1, 0], raw))
    bad[40] ^= 0x10
    put('record', 'badcrc.rec', bytes(bad))


def info_json(**over):
    info = {'name': 'voc', 'format': 'voc', 'classes': ['aeroplane', 'bicycle', 'caf\u00e9'],
            'counts': {'train': 10, 'val': 2, 'test': 5}, 'height': 448, 'width': 448,
            'channels': 3, 'encoding': 'raw', 'full_label_default': 0,
            'ingest': {'seed': 1200, 'num_pos': 1, 'size': 448},
            'skipped': [{'path': 'JPEGImages/bad.jpg', 'reason': 'cannot decode'}]}
    info.update(over)
    return json.dumps(info).encode()


def corpus_store_meta():
    put('store_meta', 'voc.json', info_json())
    put('store_meta', 'openimages.json', info_json(
        name='openimages', format='openimages', full_label_default=-1, encoding='jpeg',
        groups=[[0], [1], [2], [], []]))
    put('store_meta', 'missing.json', b'{"name": "x", "classes": [], "counts": {}}')
    put('store_meta', 'badtypes.json', info_json(height='448', classes=['a', 3]))


def idx_bytes(magic, dims, data):
    return struct.pack('>I', magic) + b''.join(struct.pack('>I', d) for d in dims) + bytes(data)


def fashion_files(n_train, n_test, seed, gz=True):
    r = np.random.RandomState(seed)
    parts = []
    for n in (n_train, n_test):
        img = idx_bytes(0x803, (n, 28, 28), r.randint(0, 255, n * 784).astype(np.uint8))
        lab = idx_bytes(0x801, (n,), r.randint(0, 10, n).astype(np.uint8))
        if gz:
            img, lab = gzip.compress(img, 6, mtime=0), gzip.compress(lab, 6, mtime=0)
        parts += [img, lab]
    return parts  # train-images, train-labels, t10k-images, t10k-labels


def corpus_fashion():
    put('fashion', 'gz_3_2', SEP.join(fashion_files(3, 2, 0)))
    put('fashion', 'raw_2_1', SEP.join(fashion_files(2, 1, 1, gz=False)))
    p = fashion_files(2, 2, 2)
    p[1] = gzip.compress(idx_bytes(0x801, (3,), [1, 2, 3]), mtime=0)  # count mismatch
    put('fashion', 'mismatch', SEP.join(p))
    p = fashion_files(1, 1, 3)
    p[0] = p[0][:len(p[0]) // 2]  # truncated gzip stream
    put('fashion', 'truncated', SEP.join(p))


def corpus_voc():
    # parts: aeroplane_train, aeroplane_val, bicycle_train, person_val (fuzz_voc.c)
    put('voc', 'valid', SEP.join([b'2008_000008 -1\n2008_000015  1\n2008_000002  0\n',
                                  b'2009_000001  1\n2009_000002 -1\n',
                                  b'2008_000015  1\r\n2008_000008\t1\n\n',
                                  b'2009_000002  1\n']))
    put('voc', 'bad_flag', SEP.join([b'2008_000008 2\n', b'', b'', b'']))
    put('voc', 'missing_files', b'2008_000001 1\n')


def corpus_cub():
    attrs = b'1 has_bill_shape::curved\n2 has_wing_color::blue\n3 has_size::small_(5_-_9_in)\n'
    images = b'1 001.Black_footed_Albatross/a_0000.jpg\n2 017.Cardinal/c_0001.jpg\n3 017.Cardinal/c 2.jpg x\n'
    images_ok = b'1 001.Black_footed_Albatross/a_0000.jpg\n2 017.Cardinal/c_0001.jpg\n'
    split = b'1 1\n2 0\n'
    labels = b''.join(b'%d %d %d 3 12.5\n' % (i, a, (i + a) % 2) for i in (1, 2) for a in (1, 2, 3))
    labels += b'1 1 1 3 4.0 extra field\n'  # a repeated pair (error); the release has extra fields
    put('cub', 'valid', SEP.join([attrs, images_ok, split, labels.rsplit(b'\n', 2)[0] + b'\n']))
    put('cub', 'bad_images', SEP.join([attrs, images, split, labels]))
    put('cub', 'repeat', SEP.join([attrs, images_ok, split, labels]))


def corpus_openimages():
    classes = b'/m/0038\n/m/0005\n/m/007c\n'
    desc = b'/m/0005,"Cat, domestic"\n/m/0016,Bat\n/m/0038,Thing\n/m/007c,Thing\n'
    hdr = b'ImageID,Source,LabelName,Confidence\n'
    train = hdr + (b'09dadd8e438d0a17,verification,/m/0005,0\n1271f16e6b5bfa2a,verification,/m/0038,1\n'
                   b'09dadd8e438d0a17,verification,/m/007c,1\n09dadd8e438d0a17,verification,/m/0005,1\n'
                   b'00496e481634d159,verification,/m/00af,1\n')
    val = hdr + b'aaaa,verification,/m/0038,1\n'
    test = b'Source,ImageID,Confidence,LabelName\nv,bbbb,0,/m/007c\n'
    put('openimages', 'valid', SEP.join([classes, desc, train, val, test]))
    put('openimages', 'bad_conf', SEP.join([classes, desc, hdr + b'x,v,/m/0038,0.5\n', val, test]))


def corpus_csv():
    put('csv', 'valid', SEP.join([b'path,labels\nsub/img01.jpg,car\n"a, b/img 2.jpg",\nimg03.png,apple|sky\n',
                                  b'', b'path,labels\nt.jpg,sky\n']))
    put('csv', 'observed', SEP.join([
        b'path,labels,observed\nsub/img01.jpg,dog,dog|-sky\n"a ""q"".jpg",zebra|apple,zebra\n',
        b'labels,path,observed\nsky,v.jpg,-apple\n', b'path,observed,labels\nt.jpg,,dog\n']))
    put('csv', 'classes', SEP.join([b'path,labels\nx.jpg,b|a\n', b'', b'', b'a\n b \n\nc\n']))


def corpus_coco():
    def coco(images, anns, cats=((1, 'person'), (3, 'car'), (90, 'caf\u00e9'))):
        return json.dumps({'info': {'year': 2014, 'nested': [1, 2.5, None, True, {}]},
                           'images': [{'file_name': 'COCO_%012d.jpg' % i, 'id': i, 'height': 5}
                                      for i in images],
                           'annotations': [{'image_id': i, 'category_id': c, 'id': k,
                                            'bbox': [1.5, 2, 3, 4], 'segmentation': [[1, 2]]}
                                           for k, (i, c) in enumerate(anns)],
                           'categories': [{'supercategory': 'x', 'id': c, 'name': n}
                                          for c, n in cats]}).encode()
    put('coco', 'valid', SEP.join([coco([9, 10, 100, 42], [(9, 1), (10, 3), (100, 90), (9, 3)]),
                                   coco([7, 70], [(7, 90)])]))
    put('coco', 'bad_cat', SEP.join([coco([9], [(9, 2)]), coco([7], [(7, 1)])]))


def corpus_ingest_npy():
    imgs = np.array(['Flickr/a/1.jpg', 'Flickr/b/2.jpg', 'Flickr/caf\u00e9/3.jpg'])
    lab = np.array([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 1, 0]], dtype=np.float64)
    obs = np.array([[1, 0, 0, -1], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float64)
    put('ingest_npy', 'valid', SEP.join([npy_bytes(imgs), npy_bytes(lab), npy_bytes(imgs[:2]),
                                         npy_bytes(lab[:2].astype('u1'))]))
    put('ingest_npy', 'observed', SEP.join([npy_bytes(imgs), npy_bytes(lab.astype('i1')),
                                            npy_bytes(imgs[1:]), npy_bytes(lab[1:]),
                                            npy_bytes(obs.astype('<f4'))]))


def png16_bytes():
    """A 16-bit grey PNG (libvips converts it to 8-bit sRGB)."""
    im = Image.fromarray(np.arange(9, dtype=np.uint16).reshape(3, 3) * 7000, 'I;16')
    b = io.BytesIO()
    im.save(b, 'PNG')
    return b.getvalue()


def corpus_image():
    put('image', 'rgb.jpg', jpeg_bytes(6, 9, quality=60))
    put('image', 'grey.jpg', jpeg_bytes(5, 4, mode='L', quality=60))
    put('image', 'cmyk.jpg', jpeg_bytes(4, 4, mode='CMYK', quality=60))
    put('image', 'rgba.png', jpeg_bytes(5, 6, mode='RGBA', fmt='PNG'))
    put('image', 'palette.png', jpeg_bytes(4, 5, mode='P', fmt='PNG'))
    put('image', 'grey16.png', png16_bytes())
    put('image', 'rgb.gif', jpeg_bytes(4, 4, mode='P', fmt='GIF'))
    put('image', 'rgb.bmp', jpeg_bytes(3, 2, fmt='BMP'))
    put('image', 'rgb.webp', jpeg_bytes(4, 4, fmt='WEBP', quality=50))
    put('image', 'rgb.tif', jpeg_bytes(3, 3, fmt='TIFF'))
    put('image', 'truncated.jpg', jpeg_bytes(8, 8, quality=60)[:-40])


def main():
    makers = {'npy': corpus_npy, 'safetensors': corpus_safetensors, 'record': corpus_record,
              'store_meta': corpus_store_meta, 'fashion': corpus_fashion, 'voc': corpus_voc,
              'cub': corpus_cub, 'openimages': corpus_openimages, 'csv': corpus_csv,
              'coco': corpus_coco, 'ingest_npy': corpus_ingest_npy, 'image': corpus_image}
    for name in sys.argv[1:] or list(makers):
        makers[name]()


if __name__ == '__main__':
    main()
