var convert = 42;
